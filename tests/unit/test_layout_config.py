"""Rank layout and config parsing, in one process."""

import pytest

from drlmpi import config
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
    assert build_layout(1, dqn.ROLES, "dqn").roles == ("serial",)
    with pytest.raises(UserError, match="exactly 1 rank"):
        build_layout(2, dqn.ROLES, "dqn")


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


def test_every_config_field_has_a_docstring():
    docs = config.field_docs(dqn.Config)
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
