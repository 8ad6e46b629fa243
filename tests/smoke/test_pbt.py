"""Population-based training end to end: the PBT paper's toy problem against exploit/explore off, an exact state copy
between DQN members, PPO members searching PPO's hyperparameters, Ape-X members of 4 ranks under -n 16, and SIGTERM
then `--resume auto`."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import DRLMPI, mpirun, run, sigterm_once_logging

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(Path(__file__).parent)}


def pbt_cmd(d, *sets: str, steps: int | None = None, member: str = "dqn") -> list[str]:
    cmd = [DRLMPI, "--algo", "pbt", "--env", "CartPole-v1", "--run-dir", str(d), "--set", f"member={member}"]
    cmd += ["--total-env-steps", str(steps)] if steps else []
    return cmd + [a for s in sets for a in ("--set", s)]


def population(d) -> list[dict]:
    with open(Path(d) / "population.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def lineage(d) -> list[dict]:
    return [json.loads(line) for line in (Path(d) / "lineage.jsonl").read_text().splitlines()]


def test_toy_problem_pbt_beats_the_same_members_without_exploit(tmp_path):
    """Q = 1.2 - (t0^2 + t1^2), each member ascending Qhat = 1.2 - (h0 t0^2 + h1 t1^2) from h = (1, 0) and (0, 1):
    alone a member stops at 0.39; copying the other's theta and exploring h reaches close to 1.2."""
    best = {}
    for mode in ("true", "false"):
        d = tmp_path / mode
        cmd = pbt_cmd(d, "population=2", "search=h0,h1", "init=h0=1:0,h1=0:1", "ready_every=5", "rank_episodes=1",
                      f"exploit={mode}", member="toy_algo_pkg.pbt_toy")
        r = mpirun(2, cmd, timeout=120, env=ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = population(d)
        assert [int(x["generation"]) for x in rows] == [g for g in range(20) for _ in range(2)]
        best[mode] = max(x["score"] for x in rows if x["generation"] == 19)
        events = lineage(d)
        assert bool(events) == (mode == "true"), events
        for e in events:  # each copies the top member's values, then explores from them
            top = next(x for x in rows if x["generation"] == e["generation"] - 1 and x["member"] == e["from"])
            assert e["copied"] == {"h0": top["hp_h0"], "h1": top["hp_h1"]}, e
    assert best["false"] == pytest.approx(0.39, abs=0.01) and best["true"] > 1.0, best


def test_dqn_members_copy_networks_exactly(tmp_path):
    """With no updates (replay_ratio 0) a member's networks after an exploit are bit for bit the top member's at the
    ready point (the optimizer's copy: tests/mpi/scripts/pbt_exploit.py). The run evaluates its best member."""
    d = tmp_path / "run"
    r = mpirun(4, pbt_cmd(d, "ready_every=1500", "member_set=replay_ratio=0;learning_starts=100", steps=3000),
               timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    events = lineage(d)
    assert len(events) == 1 and len(population(d)) == 8, (events, population(d))
    e = events[0]
    first = {m: sorted((d / f"member-{m}" / "checkpoints").glob("ckpt-*.h5"))[0] for m in range(4)}
    top = checkpoint.load(first[e["from"]])
    bottom = checkpoint.load(d / f"member-{e['member']}")
    for net in ("online", "target"):
        for k, a in top.nets[net].items():
            np.testing.assert_array_equal(bottom.nets[net][k], a)
    own = checkpoint.load(first[e["member"]])
    assert any((own.nets["online"][k] != a).any() for k, a in top.nets["online"].items())  # it had other weights
    assert bottom.env_steps >= 3000 and bottom.rng != top.rng  # its own counters and RNG
    ev = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert ev.returncode == 0 and json.loads(ev.stdout)["algo"] == "dqn", ev.stderr
    ins = run([DRLMPI, "inspect", str(d), "--json"], timeout=60)
    info = json.loads(ins.stdout)
    assert info["algo"] == "pbt" and sorted(info["parts"]) == [f"member-{m}" for m in range(4)], info


def test_ppo_members_search_lr_clip_entropy_and_gae_lambda(tmp_path):
    """`--set member=ppo --set search=lr,clip,entropy,gae_lambda`: members exploit and explore PPO's own
    hyperparameters (clip and clip_final together), and the best member evaluates."""
    d = tmp_path / "run"
    cmd = pbt_cmd(d, "ready_every=2000", "search=lr,clip,entropy,gae_lambda", "member_set=epochs=4", member="ppo",
                  steps=6000)
    r = mpirun(4, cmd, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    events = lineage(d)
    assert events and all(set(e["hparams_before"]) == {"lr", "clip", "entropy", "gae_lambda"} for e in events), events
    configs = [json.loads((d / f"member-{m}" / "config.json").read_text()) for m in range(4)]
    assert len({c["clip"] for c in configs}) > 1 and all(c["clip_final"] == 0 for c in configs), \
        "clip searched; clip_final keeps its default ratio to clip (0)"
    ev = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120)
    assert ev.returncode == 0 and json.loads(ev.stdout)["algo"] == "ppo", ev.stderr


def test_four_apex_members_of_four_ranks(tmp_path):
    """`mpiexec -n 16 drlmpi --algo pbt --set member=apex --set population=4` (shortened): exit 0, every member
    on its own Ape-X layout, at least one exploit in the lineage."""
    d = tmp_path / "run"
    r = mpirun(16, pbt_cmd(d, "population=4", "ready_every=2000", member="apex", steps=4000), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pbt: 4 apex member(s) of 4 rank(s)" in r.stdout, r.stdout
    assert len(lineage(d)) >= 1 and len(population(d)) == 8
    for m in range(4):
        st = checkpoint.load(d / f"member-{m}")
        assert st.algo == "apex" and sorted(st.layout["roles"]) == ["actor", "actor", "learner", "replay"]


def test_sigterm_then_resume_auto_continues_the_population(tmp_path):
    """SIGTERM: every member checkpoints, the job writes the population checkpoint and exits 75; `--resume auto`
    finishes the interrupted generation and the rest, with the history whole (each generation once, 4 rows)."""
    from drlmpi.signals import REQUEUE_EXIT

    d = tmp_path / "run"
    cmd = pbt_cmd(d, "ready_every=2000", "log_every=1", steps=8000)
    code, out, err = sigterm_once_logging(4, cmd, d / "member-0", after=6.0)
    assert code == REQUEUE_EXIT, out + err
    st = checkpoint.load(d)
    assert st.algo == "pbt" and st.env_steps < 8000, st.counters
    r = mpirun(4, cmd + ["--resume", "auto"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = population(d)
    assert [(int(x["generation"]), int(x["member"])) for x in rows] == [(g, m) for g in range(4) for m in range(4)]
    end = checkpoint.load(d)
    assert end.env_steps >= 8000 and end.counters["generation"] == 3
    assert all(checkpoint.load(d / f"member-{m}").env_steps >= 8000 for m in range(4))


def test_a_population_killed_mid_generation_keeps_what_its_checkpoint_links(tmp_path):
    """Members checkpoint often (checkpoint_every 0.3 s) during a generation; a SIGKILL after the first population
    checkpoint leaves that checkpoint whole: every member checkpoint it links is still there (members used to prune
    them), so `--resume auto` has something to resume."""
    import os
    import signal
    import subprocess
    import time

    from helpers import MPIEXEC

    d = tmp_path / "run"
    cmd = pbt_cmd(d, "ready_every=1000", "checkpoint_every=0.3", "keep_checkpoints=1",
                  "member_set=learning_starts=100", steps=100_000)
    p = subprocess.Popen([MPIEXEC, "-n", "4", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        t0 = time.monotonic()
        while not list((d / "checkpoints").glob("ckpt-*.h5")) and time.monotonic() - t0 < 180:
            time.sleep(0.1)
        first = sorted((d / "checkpoints").glob("ckpt-*.h5"))
        assert first, "no population checkpoint"
        linked = checkpoint.load(first[0], parts=False)
        t1 = time.monotonic()  # members write periodic checkpoints of the next generation meanwhile
        while sum(len(list((d / f"member-{m}" / "checkpoints").glob("ckpt-*.h5"))) for m in range(4)) < 12 and \
                time.monotonic() - t1 < 60:
            time.sleep(0.1)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
    st = checkpoint.load(d)  # the newest population checkpoint, every member checkpoint it links verified
    assert st.id >= linked.id and all(st.part_path(f"member-{m}").exists() for m in range(4))
