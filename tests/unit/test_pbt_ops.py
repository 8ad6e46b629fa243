"""Population-based training in one process: its decisions (ops.pbt), the state copy's packing (comm.states), the
members' configs, config errors, and the population checkpoint's round trip."""

import math

import numpy as np
import pytest
import torch

from drlmpi import algos, checkpoint, config, lifecycle
from drlmpi.algos import pbt
from drlmpi.comm import states
from drlmpi.config import Hparam
from drlmpi.errors import CheckpointError, UserError
from drlmpi.ops import pbt as ops

LR = Hparam(("lr", "lr_final"), 1e-6, 1e-2)
GAMMA = Hparam(("gamma",), 0.9, 0.9999, "log1m")
H = Hparam(("h0",), 0.0, 1.0, "linear")


def test_prior_scales_map_ends_and_middle():
    assert ops.value(LR, 0) == pytest.approx(1e-6) and ops.value(LR, 1) == pytest.approx(1e-2)
    assert ops.value(LR, 0.5) == pytest.approx(1e-4)  # log-uniform: the geometric middle
    assert ops.value(GAMMA, 0) == pytest.approx(0.9) and ops.value(GAMMA, 1) == pytest.approx(0.9999)
    assert ops.value(GAMMA, 0.5) == pytest.approx(1 - math.sqrt(0.1 * 1e-4))  # 1 - gamma log-uniform
    assert ops.value(H, 0.25) == pytest.approx(0.25)


def test_spread_covers_the_prior_log_uniformly():
    rng = np.random.default_rng(0)
    lrs = [v["lr"] for v in ops.initial({"lr": LR}, 4, rng)]
    np.testing.assert_allclose(lrs, [1e-6, 10 ** (-6 + 4 / 3), 10 ** (-6 + 8 / 3), 1e-2], rtol=1e-9)
    two = ops.initial({"lr": LR, "gamma": GAMMA}, 5, rng)  # a Latin hypercube: each value once per hyperparameter
    assert sorted(round(v["gamma"], 9) for v in two) == sorted(round(ops.value(GAMMA, u), 9)
                                                                for u in np.linspace(0, 1, 5))
    drawn = ops.initial({"lr": LR}, 1000, rng, spread=False)
    logs = np.log10([v["lr"] for v in drawn])
    assert logs.min() >= -6 and logs.max() <= -2 and abs(logs.mean() + 4) < 0.15


def test_explore_perturbs_by_the_factors_clips_and_resamples():
    rng = np.random.default_rng(1)
    space = {"lr": LR, "gamma": GAMMA}
    seen = set()
    for _ in range(200):
        v = ops.explore({"lr": 1e-4, "gamma": 0.99}, space, rng, resample_p=0.0)
        seen.add(round(v["lr"] / 1e-4, 9))
        assert round((1 - v["gamma"]) / 0.01, 9) in (0.8, 1.2)
    assert seen == {0.8, 1.2}
    assert ops.explore({"lr": 1e-2}, {"lr": LR}, rng, 0.0, (1.2,))["lr"] == 1e-2  # clipped to the prior
    redrawn = [ops.explore({"lr": 1e-4}, {"lr": LR}, rng, 1.0)["lr"] for _ in range(100)]
    assert len(set(redrawn)) == 100 and all(1e-6 <= x <= 1e-2 for x in redrawn)
    share = np.mean([round(ops.explore({"h0": 0.5}, {"h0": H}, rng)["h0"], 9) not in (0.4, 0.6)
                     for _ in range(4000)])
    assert 0.22 < share < 0.28  # resample_p 0.25 by default


def test_truncation_selection():
    rng = np.random.default_rng(2)
    assert ops.exploit_pairs([1.0, 5.0, 3.0, 2.0], 0.25, rng) == [(0, 1)]  # the worst copies the best
    pairs = ops.exploit_pairs(list(range(8)), 0.25, rng)
    assert sorted(b for b, _ in pairs) == [0, 1] and all(t in (6, 7) for _, t in pairs)
    assert ops.exploit_pairs([math.nan, 4.0], 0.25, rng) == [(0, 1)]  # no score yet ranks lowest
    assert ops.exploit_pairs([math.nan, math.nan], 0.25, rng) == []  # nobody to copy
    assert ops.exploit_pairs([3.0, 3.0], 0.25, rng) in ([(0, 1)], [(1, 0)])  # ties still explore
    assert ops.exploit_pairs([1.0], 0.25, rng) == []
    assert len(ops.exploit_pairs(list(range(4)), 0.5, rng)) == 2


def _state(seed: int) -> checkpoint.State:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    from drlmpi.nets import state_arrays

    return checkpoint.State(algo="dqn", env="CartPole-v1", config={}, counters={"env_steps": 7},
                            nets={"online": state_arrays(net), "target": state_arrays(net)},
                            optim={"adam": lifecycle.optim_state(opt)}, returns=[1.0, 2.5])


def test_state_pack_unpack_is_exact_and_keeps_the_receivers_own_fields():
    top, bottom = _state(0), _state(1)
    header, body = states.pack(top)
    assert body.dtype == np.uint8 and body.nbytes == sum(a.nbytes for p in top.nets.values() for a in p.values()) + \
        sum(np.asarray(a).nbytes for s in top.optim["adam"]["state"].values() for a in s.values())
    states.unpack(header, body.copy(), bottom)
    for net in top.nets:
        for k, a in top.nets[net].items():
            np.testing.assert_array_equal(bottom.nets[net][k], a)
            assert bottom.nets[net][k].dtype == a.dtype
    for i, s in top.optim["adam"]["state"].items():
        for k, a in s.items():
            np.testing.assert_array_equal(bottom.optim["adam"]["state"][i][k], a)
    assert bottom.optim["adam"]["groups"] == top.optim["adam"]["groups"] and bottom.returns == [1.0, 2.5]
    assert bottom.counters == {"env_steps": 7}
    with pytest.raises(ValueError, match="header describes"):
        states.unpack(header, body[:-4], _state(2))


def test_member_config_ties_lr_final_to_lr_and_sets_the_pause():
    cfg = config.build(pbt.Config, None, ["member=dqn", "population=4"], run_dir="/tmp/x")
    assert cfg.total_env_steps == 0 and pbt.validate(cfg) is not cfg  # validate changes no config: it makes one
    cfg = pbt.validate(cfg)
    assert cfg.total_env_steps == algos.get("dqn").Config().total_env_steps  # 0 -> the member's default
    base = algos.get("dqn").Config()
    m = pbt.member_config(cfg, 2, {"lr": 1e-3}, 20_000)
    assert m.lr == 1e-3 and m.lr_final == pytest.approx(base.lr_final * 1e-3 / base.lr)
    assert m.pause_at_env_steps == 20_000 and m.run_dir == "/tmp/x/member-2" and m.seed != pbt.member_config(
        cfg, 1, {}, 0).seed
    cfg2 = config.build(pbt.Config, None, ["member=apex", "search=lr:1e-5:1e-3,gamma,eps",
                                           "member_set=batch_size=64;n_step=5"])
    assert set(pbt.space_of(cfg2)) == {"lr", "gamma", "eps"} and pbt.space_of(cfg2)["lr"].lo == 1e-5
    m2 = pbt.member_config(cfg2, 0, {"eps": 0.3}, 0)
    assert (m2.batch_size, m2.n_step, m2.eps_base) == (64, 5, 0.3)


@pytest.mark.parametrize("sets, message", [
    (["search=nope"], "dqn has no searchable 'nope'"),
    (["member=pbt"], "member cannot be pbt"),
    (["member=nosuch"], "unknown algorithm 'nosuch'"),
    (["search=lr:1:0"], "bad prior"),
    (["init=lr=1e-3:1e-4"], "init: expected"),
    (["quantile=0.7"], "quantile must be in"),
    (["member_set=batch_size=0"], "pbt member dqn: config: batch_size must be >= 1"),
])
def test_config_errors_are_one_line(sets, message):
    with pytest.raises(UserError, match=message):  # from the config's checks, or from validate (rank 0, once)
        pbt.validate(config.build(pbt.Config, None, sets))


def test_layout_must_split_into_members():
    from drlmpi.runtime import build_layout

    cfg = config.build(pbt.Config, None, ["member=apex", "population=4"])
    pbt.check_layout(build_layout(16, pbt.LAYOUT, "pbt"), cfg)
    with pytest.raises(UserError, match="6 ranks do not split into 4 members"):
        pbt.check_layout(build_layout(6, pbt.LAYOUT, "pbt"), cfg)
    with pytest.raises(UserError, match="member 0 on 2 rank"):
        pbt.check_layout(build_layout(8, pbt.LAYOUT, "pbt"), cfg)


def test_population_checkpoint_round_trip_and_damaged_member(tmp_path):
    """save_population -> load: counters, history, RNG and parts identical; a damaged member file is refused."""
    cfg = config.build(pbt.Config, None, ["population=2"], run_dir=str(tmp_path))
    paths = []
    for m in range(2):
        st = _state(m)
        paths.append(str(checkpoint.save(tmp_path / f"member-{m}" / "checkpoints" / checkpoint.name_of(7, 1), st)))
    gen = np.random.default_rng(5)
    gen.random(3)
    rows = [{"generation": 0, "member": m, "env_steps": 7, "score": [3.0, math.nan][m], "parent": -1, "copy_ms": 0.0,
             "updates": 2, "hp_lr": [1e-6, 1e-2][m]} for m in range(2)]
    reports = [{"env_steps": 7, "updates": 2, "checkpoint": p, "copy_ms": 1.5 * m} for m, p in enumerate(paths)]
    path = pbt.save_population(gen, cfg, 4, 1, True, [{"lr": 1e-6}, {"lr": 2e-2}], [-1, 0], reports, rows,
                               {"roles": ["serial", "serial"], "hosts": ["h", "h"]}, 9.0)
    expected = gen.random(4)
    st = checkpoint.load(path)
    assert (st.algo, st.id, st.env_steps) == ("pbt", 4, 7)
    assert st.counters["generation"] == 1 and st.counters["ready"] == 1 and st.counters["hp.1.lr"] == 2e-2
    assert st.counters["parent.1"] == 0 and st.counters["copy_ms.1"] == 1.5
    back = pbt.rows_of(st.metrics)
    assert back[0] == rows[0] and math.isnan(back[1]["score"]) and back[1]["hp_lr"] == 1e-2
    gen2 = np.random.default_rng(0)
    lifecycle.restore_rng(st, "pbt", gen2)
    np.testing.assert_array_equal(gen2.random(4), expected)
    assert pbt.policy_state(st).path == checkpoint.resolve(paths[0])  # the best score (member 1 has none)
    with open(paths[1], "r+b") as f:  # one flipped byte in a member's checkpoint
        f.seek(-10, 2)
        b = f.read(1)
        f.seek(-10, 2)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.load(path)
