"""A rank with no torch model imports no torch (about 130 MiB of a rank's memory): what GA3C's and SEED RL's
actors (no model), IMPALA's, APPO's, Ape-X's and GORILA's (a numpy one, drlmpi.acting) and Ape-X's and GORILA's
replay shards import — their algorithm module, central inference, acting, the actor-critic and value-based
configurations, the runtime, the planes, the checkpoint client — leaves torch out, and their exported network
functions still reach the torch modules'."""

import subprocess
import sys

from drlmpi import ac_config, nets

ACTOR_PATH = ["drlmpi.cli", "drlmpi.algos.seed", "drlmpi.algos.ga3c", "drlmpi.algos.impala", "drlmpi.algos.appo",
              "drlmpi.algos.apex", "drlmpi.algos.gorila", "drlmpi.acting", "drlmpi.value_config", "drlmpi.ops.priority",
              "drlmpi.replay.plane", "drlmpi.replay.actor", "drlmpi.central", "drlmpi.ac_config",
              "drlmpi.runtime", "drlmpi.lifecycle", "drlmpi.learner", "drlmpi.comm.inference",
              "drlmpi.comm.checkpoint", "drlmpi.comm.control", "drlmpi.envs"]


def test_a_torch_free_actors_modules_import_no_torch():
    code = ("import importlib, sys\n"
            f"for m in {ACTOR_PATH!r}: importlib.import_module(m)\n"
            "from drlmpi.comm.checkpoint import rng_state\n"
            "import numpy as np\n"
            "state = rng_state(np.random.default_rng(0))\n"
            "assert state['torch'].size == 0, state\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", "importing a torch-free actor's modules imported torch"


def test_the_torch_free_algorithms_export_actor_critics_network_functions():
    from drlmpi import actor_critic
    from drlmpi.algos import appo, ga3c, impala, seed

    for module in (seed, ga3c, impala, appo):
        for name in ac_config.MODEL_NAMES:
            assert getattr(module, name) is getattr(actor_critic, name)
    from drlmpi import value_based
    from drlmpi.algos import apex, gorila

    for name in ac_config.MODEL_NAMES:
        assert getattr(apex, name) is getattr(value_based, name)
    assert gorila.build_net is value_based.build_net and gorila.load_policy is value_based.load_policy


def test_the_torch_free_activation_names_are_the_networks():
    from drlmpi import acting

    assert ac_config.ACTIVATIONS == tuple(nets.ACTIVATIONS) == tuple(acting.ACTIVATIONS)


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
