"""Rank layout and config parsing, in one process."""

import pytest

from drlmpi import algos, config
from drlmpi.algos import dqn
from drlmpi.errors import UserError
from drlmpi.runtime import RoleSpec, build_layout, parse_layout_arg

APEX_LIKE = RoleSpec(fixed=(("learner", 1), ("replay", 2)), min_actors=1)


def test_layout_assigns_fixed_roles_first_then_actors():
    lay = build_layout(6, APEX_LIKE, "x")
    assert lay.roles == ("learner", "replay", "replay", "actor", "actor", "actor")
    assert lay.ranks("replay") == [1, 2]
    assert "learner" in lay.table() and lay.table().count("\n") == 6


def test_layout_too_few_ranks_names_the_minimum():
    with pytest.raises(UserError, match=r"x needs at least 4 ranks \(1 learner, 2 replay, 1\+ actor\); got 3"):
        build_layout(3, APEX_LIKE, "x")


def test_layout_serial_and_single_process():
    assert build_layout(1, APEX_LIKE, "x").roles == ("serial",)
    assert build_layout(1, dqn.LAYOUT, "dqn").roles == ("serial",)
    with pytest.raises(UserError, match="exactly 1 rank"):
        build_layout(2, dqn.LAYOUT, "dqn")


def test_layout_overrides():
    spec = APEX_LIKE.with_overrides(parse_layout_arg("learner=2,ps=1"))
    assert build_layout(7, spec, "x").roles == ("learner", "learner", "ps", "replay", "replay", "actor", "actor")
    with pytest.raises(UserError, match="unknown role"):
        APEX_LIKE.with_overrides(parse_layout_arg("wizard=1"))
    with pytest.raises(UserError, match="role=count"):
        parse_layout_arg("learner:2")


def test_config_precedence_and_types(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('lr = 0.01\nbatch_size = 64\nhidden = [32, 32]\ndueling = false\nenv = "Acrobot-v1"\n')
    cfg = config.build(dqn.Config, str(toml), ["batch_size=32", "hidden=16,8", "total_env_steps=1_000"], seed=3)
    assert (cfg.lr, cfg.batch_size, cfg.hidden, cfg.dueling, cfg.env) == (0.01, 32, (16, 8), False, "Acrobot-v1")
    assert (cfg.total_env_steps, cfg.seed) == (1000, 3)
    assert config.from_dict(dqn.Config, config.to_dict(cfg)) == cfg


@pytest.mark.parametrize("algo", sorted(algos.ALGOS))
def test_every_config_field_has_a_docstring(algo):
    docs = config.field_docs(algos.get(algo).Config)
    assert all(docs.values()), [k for k, v in docs.items() if not v]


def test_atari_defaults_sit_between_defaults_and_everything_given(tmp_path):
    build = config.build
    from drlmpi.algos import apex

    assert build(apex.Config, env="CartPole-v1").batch_size == 128  # not Atari: the plain default
    assert build(apex.Config, env="ALE/Pong-v5").batch_size == apex.Config.ATARI["batch_size"]
    toml = tmp_path / "run.toml"
    toml.write_text('env = "ALE/Pong-v5"\nbatch_size = 48\n')
    cfg = build(apex.Config, str(toml))
    assert cfg.batch_size == 48 and cfg.replay_ratio == apex.Config.ATARI["replay_ratio"]  # file beats preset
    assert build(apex.Config, str(toml), ["batch_size=8"]).batch_size == 8


def hosts_of(n: int, per_host: int) -> tuple[str, ...]:
    return tuple(f"h{r // per_host}" for r in range(n))


def test_placement_on_pretend_hosts_one_replay_shard_per_host_learners_on_host_0():
    from drlmpi.algos import apex, gorila

    lay = build_layout(16, apex.LAYOUT, "apex", hosts_of(16, 4), (2,) * 16)
    host = lay.host_ids()
    assert [host[r] for r in lay.ranks("replay")] == [0, 1, 2, 3]  # one shard per host, by default
    assert [host[r] for r in lay.ranks("learner")] == [0]
    assert len(lay.ranks("actor")) == 11 and lay.threads == (1,) * 16  # 2 cores, 4 ranks a host: 1 each
    spec = apex.LAYOUT.with_overrides({"replay": 1, "learner": 2})  # --layout overrides the default spread
    lay = build_layout(16, spec, "apex", hosts_of(16, 4))
    assert lay.ranks("replay") == [2] and lay.ranks("learner") == [0, 1]
    lay = build_layout(9, gorila.LAYOUT, "gorila", hosts_of(9, 3))  # ps next to the learner, replay spread
    assert lay.roles[:3] == ("learner", "ps", "replay") and [host for host in lay.ranks("replay")] == [2, 3, 6]


def test_replay_default_spread_leaves_the_actors_they_need():
    from drlmpi.algos import apex

    lay = build_layout(4, apex.LAYOUT, "apex", hosts_of(4, 1))  # 4 hosts of 1 rank: only 2 ranks to spare
    assert lay.roles == ("learner", "replay", "replay", "actor")


def test_a3c_gets_a_ps_rank_only_across_hosts():
    from drlmpi.algos import a3c

    assert build_layout(4, a3c.LAYOUT, "a3c").roles == ("actor",) * 4  # one host: Hogwild! in its window
    assert build_layout(4, a3c.LAYOUT, "a3c", hosts_of(4, 2)).roles == ("ps", "actor", "actor", "actor")
    spec = a3c.LAYOUT.with_overrides({"ps": 2})
    assert build_layout(4, spec, "a3c").roles == ("ps", "ps", "actor", "actor")  # asked for, also on one host
    with pytest.raises(UserError, match=r"^a3c over 2 hosts needs a ps rank .*\(--layout ps=0 leaves none\)$"):
        build_layout(4, a3c.LAYOUT.with_overrides({"ps": 0}), "a3c", hosts_of(4, 2))
    assert build_layout(2, a3c.LAYOUT, "a3c", hosts_of(2, 1)).roles == ("ps", "actor")


def test_learner_threads_take_the_cores_left_by_the_other_ranks_of_its_host():
    from drlmpi.algos import apex

    lay = build_layout(8, apex.LAYOUT, "apex", hosts_of(8, 4), (16,) * 8)
    assert lay.threads == (13, 1, 1, 1, 1, 1, 1, 1)  # host 0: learner, replay, 2 actors on 16 cores
    assert "threads" in lay.table() and " 13  h0" in lay.table()
    assert build_layout(8, apex.LAYOUT, "apex", hosts_of(8, 4), (16,) * 8, torch_threads=3).threads == (3,) * 8


def test_throttle_band_and_start():
    from drlmpi.replay.throttle import Throttle

    first = Throttle(ratio=0.25, band=0.1, start=256, slack=100)
    assert not first.actors_pause(356, 0) and first.actors_pause(357, 0)  # the first batch is always allowed
    t = Throttle(ratio=0.25, band=0.1, start=256, slack=100, lag=10)
    allowed = t.env_steps_allowed(1000)
    assert allowed == pytest.approx(356 + 1010 / 0.225)
    assert not t.learners_wait(274, 1000) and t.learners_wait(275, 1000)  # 0.25 * 1.1 per step
    # inside the band neither side waits: 10_000 steps, 2_400 updates (ratio 0.24)
    assert not t.actors_pause(10_000, 2_400) and not t.learners_wait(2_400, 10_000)
    assert not Throttle(0.0, 0.1, 256).actors_pause(1e12, 0) and not Throttle(0.0, 0.1, 256).learners_wait(9, 0)


@pytest.mark.parametrize("algo,sets,message", [
    ("apex", ["buffer_size=1000"], "buffer_size (1000) < learning_starts (2000): training would never start"),
    ("gorila", ["buffer_size=100", "learning_starts=0"], "buffer_size (100) must hold one batch (128)"),
    ("apex", ["replay_ratio_band=1"], "replay_ratio_band must be in [0, 1)"),
    ("dqn", ["replay_ratio=-1"], "replay_ratio must be >= 0"),
])
def test_configs_that_could_never_train_are_refused(algo, sets, message):
    from drlmpi import algos

    with pytest.raises(UserError) as e:
        config.build(algos.get(algo).Config, None, sets)
    assert message in str(e.value)


def test_qtopt_bellman_ranks_are_a_role_of_their_own_and_bad_layouts_or_configs_are_refused():
    from drlmpi.algos import qtopt

    spec = qtopt.LAYOUT.with_overrides({"bellman": 2})
    lay = build_layout(6, spec, "qtopt", None, (4,) * 6)
    assert lay.roles == ("learner", "replay", "bellman", "bellman", "actor", "actor") and lay.threads == (1,) * 6
    two_hosts = build_layout(6, spec, "qtopt", hosts_of(6, 3))  # a replay shard per host, bellman ranks beside
    assert two_hosts.roles == ("learner", "replay", "bellman", "replay", "bellman", "actor")
    assert build_layout(3, qtopt.LAYOUT, "qtopt").roles == ("learner", "replay", "bellman")  # offline: no actors
    cfg = config.build(qtopt.Config)
    with pytest.raises(UserError, match="^qtopt without actor ranks learns from offline data only"):
        qtopt.check_layout(build_layout(3, qtopt.LAYOUT, "qtopt"), cfg)
    with pytest.raises(UserError, match=r"needs at least one bellman rank"):
        qtopt.check_layout(build_layout(3, qtopt.LAYOUT.with_overrides({"bellman": 0}), "qtopt"), cfg)
    for sets, message in ((["env=CartPole-v1"], "qtopt needs a 1-D Box action space"),
                          (["offline_ratio=0.5"], "offline_ratio > 0 needs offline data"),
                          (["cem_elites=65"], "cem_elites (65) must be <= cem_samples (64)"),
                          (["tau=0"], "tau must be in (0, 1]")):
        with pytest.raises(UserError) as e:  # the config's own checks, or validate's (the env's spaces)
            qtopt.validate(config.build(qtopt.Config, None, sets))
        assert message in str(e.value), sets


# ---- configs declared once ----------------------------------------------------------------------------------

DISTINCT = {  # the same name for different things, declared where each belongs
    "batch_size": {"value_config.ValueConfig", "ac_config.UnrollBatch"},  # rows (transitions, sequences) vs unrolls
    "optimizer": {"a2c.Config", "gorila.Config"},  # a worker's (rmsprop, adam) vs a parameter server's
    "lstm": {"r2d2.Config", "central.CentralConfig"},  # R2D2's units vs central inference's optional core (0: none)
}


def test_every_config_field_is_declared_once():
    """A field is declared (with its docstring) in one class; an algorithm's other default is data (DEFAULTS)."""
    import dataclasses

    where: dict[str, set[str]] = {}
    for name in algos.ALGOS:
        for klass in algos.get(name).Config.__mro__:
            own = set(vars(klass).get("__annotations__", {})) - set(vars(klass).get("DEFAULTS", {}))
            label = f"{klass.__module__.rsplit('.', 1)[-1]}.{klass.__qualname__}"
            for f in own & {f.name for f in dataclasses.fields(algos.get(name).Config)}:
                where.setdefault(f, set()).add(label)
    twice = {f: w for f, w in where.items() if len(w) > 1 and w != DISTINCT.get(f)}
    assert not twice, twice


def test_defaults_are_data_and_reach_the_dataclass():
    from drlmpi.algos import impala, r2d2

    assert impala.Config().total_env_steps == 400_000 and impala.Config().n_steps == 5
    assert r2d2.Config().clip_rewards == "off" and config.merged(r2d2.Config, "DEFAULTS")["hidden"] == (64,)
    assert config.field_docs(impala.Config)["total_env_steps"] == config.field_docs(config.Common)["total_env_steps"]
    with pytest.raises(TypeError, match="not an inherited config field"):
        import dataclasses
        from typing import ClassVar

        @dataclasses.dataclass
        class Bad(config.Common):
            DEFAULTS: ClassVar[dict] = {"no_such_field": 1}


def test_one_merge_rule():
    from drlmpi.algos import qtopt, r2d3

    assert list(config.merged(r2d3.Config, "POSITIVE"))[:2] == ["keep_checkpoints", "num_envs"]  # Common's first
    assert config.merged(r2d3.Config, "DEFAULTS")["replay_ratio"] == 0.2  # the nearer class wins
    assert set(config.search_space(qtopt.Config)) == {"lr", "gamma", "eps"}


def test_check_does_no_io_and_validate_refuses_bad_files(tmp_path):
    from drlmpi.algos import qtopt, r2d3

    cfg = config.build(r2d3.Config, None, [f"demos={tmp_path / 'missing.h5'}"], env="MountainCar-v0")
    with pytest.raises(UserError, match="missing.h5"):
        r2d3.validate(cfg)
    cfg = config.build(qtopt.Config, None, [f"offline={tmp_path / 'none.h5'}"], env="CartPole-v1")
    with pytest.raises(UserError, match="Box action space"):
        qtopt.validate(cfg)


@pytest.mark.parametrize("sets,fragment", [(["seed=-1"], "seed must be >= 0"),
                                           (["checkpoint_every=nan"], "checkpoint_every must be >= 0"),
                                           (["log_every=-1"], "log_every must be >= 0"),
                                           (["lr=nan"], "lr must be >= 0"),
                                           (["hidden=0"], "hidden sizes must be >= 1")])
def test_common_fields_are_checked(sets, fragment):
    with pytest.raises(UserError, match=fragment):
        config.build(dqn.Config, None, sets)


AC_NET = ("separate_value", "activation", "orthogonal_init")  # the actor-critic network's shape and initialisation


def test_structural_keys_are_declared_with_their_fields_and_refused_on_resume():
    """A resumed run may not change what fixes its networks' or stored data's shapes, for every algorithm that has
    the key (GA3C's and SEED's lstm too, which a per-module list had missed)."""
    from drlmpi import lifecycle
    from drlmpi.checkpoint import State
    from drlmpi.errors import CheckpointError

    expected = {"dqn": {"env", "hidden", "dueling"}, "r2d2": {"env", "hidden", "dueling", "lstm", "seq_len"},
                "ga3c": {"env", "hidden", "lstm", *AC_NET}, "seed": {"env", "hidden", "lstm", *AC_NET},
                "ppo": {"env", "hidden", *AC_NET, "normalize_obs", "normalize_reward"},
                "pbt": {"env", "member", "population", "search"}}
    for algo, keys in expected.items():
        assert set(config.structural_keys(algos.get(algo).Config)) == keys, algo
    for algo, key, value in (("ga3c", "lstm", "32"), ("seed", "lstm", "32"), ("apex", "hidden", "[32]"),
                             ("r2d2", "seq_len", "40")):
        module = algos.get(algo)
        sets = ["separate_value=false"] if key == "lstm" else []  # (a value torso of its own has no LSTM core)
        state = State(algo=algo, env="CartPole-v1", config=config.to_dict(config.build(module.Config, None, sets)),
                      path="c.h5")
        with pytest.raises(CheckpointError, match=f"cannot resume with {key}="):
            lifecycle.resumed_config(module, algo, state, None, [f"{key}={value}"])
        assert lifecycle.resumed_config(module, algo, state, None, ["lr=0.01"]).lr == 0.01


def test_a_config_saved_before_the_actor_critic_network_keys_keeps_its_network():
    """Checkpoints written before separate_value, activation and orthogonal_init existed hold a shared ReLU torso:
    their saved config (without those keys) rebuilds that network (SAVED_BEFORE), for eval and for a resume, while
    a new config gets today's defaults."""
    from drlmpi import lifecycle
    from drlmpi.checkpoint import State
    from drlmpi.envs import spaces

    for algo in ("a2c", "impala"):
        module = algos.get(algo)
        saved = config.to_dict(config.build(module.Config))
        for key in ("separate_value", "activation", "orthogonal_init"):
            del saved[key]
        old = config.from_dict(module.Config, saved)
        assert (old.separate_value, old.activation, old.orthogonal_init) == (False, "relu", False), algo
        net = module.build_net(old, *spaces("CartPole-v1"))
        assert net.value_torso is None and "value_torso.net.0.weight" not in net.state_dict()
        state = State(algo=algo, env="CartPole-v1", config=saved, path="c.h5")
        resumed = lifecycle.resumed_config(module, algo, state, None, ["lr=0.01"])
        assert (resumed.separate_value, resumed.activation) == (False, "relu") and resumed.lr == 0.01
        assert config.build(module.Config).separate_value, "a new run gets today's default"
