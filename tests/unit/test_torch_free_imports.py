"""A rank with no model imports no torch (about 130 MiB of a rank's memory): what GA3C's and SEED RL's actors
import — their algorithm module, central inference, the actor-critic configuration, the runtime, the planes, the
checkpoint client — leaves torch out, and their exported network functions still reach actor_critic's."""

import subprocess
import sys

from drlmpi import ac_config, nets

ACTOR_PATH = ["drlmpi.cli", "drlmpi.algos.seed", "drlmpi.algos.ga3c", "drlmpi.central", "drlmpi.ac_config",
              "drlmpi.runtime", "drlmpi.lifecycle", "drlmpi.learner", "drlmpi.comm.inference",
              "drlmpi.comm.checkpoint", "drlmpi.comm.control", "drlmpi.envs"]


def test_a_model_less_actors_modules_import_no_torch():
    code = ("import importlib, sys\n"
            f"for m in {ACTOR_PATH!r}: importlib.import_module(m)\n"
            "from drlmpi.comm.checkpoint import rng_state\n"
            "import numpy as np\n"
            "state = rng_state(np.random.default_rng(0))\n"
            "assert state['torch'].size == 0, state\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", "importing a model-less actor's modules imported torch"


def test_the_model_less_algorithms_export_actor_critics_network_functions():
    from drlmpi import actor_critic
    from drlmpi.algos import ga3c, seed

    for module in (seed, ga3c):
        for name in ac_config.MODEL_NAMES:
            assert getattr(module, name) is getattr(actor_critic, name)


def test_the_torch_free_activation_names_are_the_networks():
    assert ac_config.ACTIVATIONS == tuple(nets.ACTIVATIONS)


def test_an_empty_torch_state_restores_numpy_and_leaves_torch_as_it_is():
    """A rank without torch saves an empty torch RNG state; restoring it where torch is imported changes only numpy's
    generator (a learner that resumes an actor-free layout reseeds torch itself)."""
    import numpy as np
    import torch

    from drlmpi.comm.checkpoint import set_rng_state

    saved = np.random.default_rng(7)
    state = {"numpy": saved.bit_generator.state, "torch": np.zeros(0, np.uint8)}
    expected = saved.random(3)
    torch.manual_seed(5)
    before = torch.get_rng_state().clone()
    gen = np.random.default_rng(0)
    set_rng_state(gen, state)
    assert np.array_equal(gen.random(3), expected)
    assert torch.equal(torch.get_rng_state(), before)
