"""benchmarks/scaling_model.py: the throughput model on a CSV of known costs, against numbers worked by hand."""

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import scaling_model as m  # noqa: E402

ROWS = [  # part, algo, ranks, actors, value, unit, limit, ratio
    ("machine", "-", 0, 0, 2, "cores", "nan", "nan"),
    ("frames", "apex", 3, 1, 1500, "frames/s", 20000, 0.075),
    ("frames", "impala", 2, 1, 10000, "frames/s", 12500, 0.8),
    ("frames", "seed", 2, 1, 4000, "frames/s", 20000, 0.2),
    ("frames", "ppo", 1, 1, 2000, "frames/s", 16000, 0.125),
    ("frames", "ppo", 2, 2, 3800, "frames/s", 32000, 0.119),
    ("actor", "apex", 3, 1, 18000, "frames/s", 20000, 0.9),
    ("learner", "apex", 3, 0, 400, "updates/s", 500, 0.8),
    ("allreduce", "mpi", 2, 1000, 0.08, "ms", 1, 12),  # GradAllreduce: 80 us at 4 KB, 100 us at 400 KB, 2.1 ms at 4 MB
    ("allreduce", "mpi", 2, 100_000, 0.10, "ms", 1.5, 15),
    ("allreduce", "mpi", 2, 1_000_000, 2.10, "ms", 6, 3),
    ("mpi-blocking", "mpi", 2, 1000, 0.004, "ms", "nan", "nan"),
    ("mpi-blocking", "mpi", 2, 100_000, 0.05, "ms", "nan", "nan"),
    ("memcpy", "numpy", 2, 1000, 0.0, "ms", "nan", "nan"),
    ("memcpy", "numpy", 2, 1_000_000, 0.4, "ms", "nan", "nan"),
    ("cost", "impala", 1, 40, 1000, "updates/s", "nan", "nan"),
    ("cost", "seed", 1, 40, 1000, "updates/s", "nan", "nan"),
    ("cost", "seed-forward", 1, 1, 10000, "forwards/s", "nan", "nan"),
    ("cost", "seed-forward", 1, 64, 1 / (99e-6 + 64e-6), "forwards/s", "nan", "nan"),
    ("cost", "apex-insert", 1, 64, 1e5, "rows/s", "nan", "nan"),
]


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    path = tmp_path_factory.mktemp("scaling") / "scaling.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["part", "algo", "ranks", "actors", "value", "unit", "limit", "ratio"])
        w.writerows(ROWS)
    return m.read_costs(path, net_latency_us=5.0, net_gbps=10.0), m.read_rows(path)


def test_reads_the_costs_from_their_rows(costs):
    c, _ = costs
    assert c.fwd == pytest.approx((99e-6, 1e-6))  # 100 us at 1 observation, 163 us at 64
    assert c.copy == pytest.approx(0.4e-3 / 3_996_000)
    assert c.level == pytest.approx(4e-6)
    assert c.cores == 2 and c.raw["impala"] == 12500 and c.actor == {"apex": 18000, "impala": 10000}


def test_two_ranks_give_back_the_measured_allreduce_and_more_ranks_cost_more(costs):
    c, _ = costs
    for floats, ms in ((1000, 0.08), (100_000, 0.10), (1_000_000, 2.10)):
        assert m.allreduce_s(c, 4 * floats, 2, 1) == pytest.approx(ms / 1e3)
    assert m.allreduce_s(c, 202_000, 2, 1) == pytest.approx((0.08 + 0.1) / 2e3)  # (between two sizes)
    assert m.allreduce_s(c, 4 * 1000, 1, 1) == 0.0
    # 32 ranks on a node: 4 more tree levels of 4 us, and a ring's 2 * 31/32 bytes where 2 ranks move 1
    slope = 2.0e-3 / 3_600_000
    assert m.allreduce_s(c, 400_000, 32, 1) == pytest.approx(0.1e-3 + 4 * 4e-6 + slope * 400_000 * (62 / 32 - 1))
    # then 4 nodes: 2 network levels of 5 us and 2 * 3/4 of the bytes at 10 GB/s
    assert m.allreduce_s(c, 400_000, 32, 4) == pytest.approx(m.allreduce_s(c, 400_000, 32, 1) + 10e-6 + 1.5 * 4e-5)


def test_calibrating_points_come_back_and_the_checks_are_predictions(costs):
    c, rows = costs
    checks = {(x["algo"], x["ranks"]): x for x in m.check(c, rows)}
    for key in (("impala", 2), ("seed", 2), ("ppo", 1)):
        assert checks[key]["calibrates"] and checks[key]["model"] == pytest.approx(checks[key]["measured"])
    assert not checks[("ppo", 2)]["calibrates"] and not checks[("apex", 3)]["calibrates"]
    # Ape-X at 3 ranks: its learner's 400 updates/s at 0.25 updates per env step, with the publication (the
    # gradient's bytes copied once every publish_every updates) and no allreduce (one learner)
    publish = c.copy * c.grad["apex"] / c.cfg["apex"]["publish_every"]
    assert checks[("apex", 3)]["model"] == pytest.approx(4 / (1 / 400 + publish))
    assert checks[("apex", 3)]["bound"] == "learner"
    assert checks[("impala", 2)]["bound"] == checks[("seed", 2)]["bound"] == "actors"


def test_ppo_adds_the_allreduce_to_each_round_and_is_linear_without_it(costs):
    c, _ = costs
    d = c.cfg["ppo"]
    frames, meetings = d["n_steps"] * d["num_envs"], d["epochs"] * d["minibatches"]
    fps, parts = m.ppo_fps(c, 2, 1)
    two = float(m.np.interp(c.grad["ppo"], [4000, 400_000], [0.08e-3, 0.1e-3]))  # the gradient is < 400 KB
    assert parts["allreduce"] == pytest.approx(meetings * two)
    assert fps == pytest.approx(2 * frames / (frames / 2000 + meetings * two))
    free = m.Costs(**{**c.__dict__, "ar2": ([4000, 4_000_000], [0.0, 0.0]), "level": 0.0, "net": (0.0, 0.0)})
    assert m.predict(free, "ppo", 1024, 32)[0] == pytest.approx(1024 * 2000)


def test_one_learner_bounds_impala_and_learners_on_one_node_lift_it(costs):
    c, _ = costs
    one, bound = m.predict(c, "impala", 64, 32)
    assert bound == "learner" and one == pytest.approx(40 / (1 / 1000 + m.publish_s(c, "impala", 2)))
    eight, _ = m.predict(c, "impala", 64, 32, learners=8)  # 8 learners on the first node, allreducing 37 KB
    per_update = 1 / 1000 + m.allreduce_s(c, c.grad["impala"], 8, 1) + m.publish_s(c, "impala", 2)
    assert eight == pytest.approx(8 * 40 / per_update) and 6 * one < eight < 8 * one
    how, fps = m.scaled(c, "impala", 64, 32)
    learners = int(how.split()[0])  # the least count whose learners take what the actors give
    assert m.predict(c, "impala", 64, 32, learners)[1] == "actors"
    assert m.predict(c, "impala", 64, 32, learners - 1)[1] == "learner"
    assert fps == pytest.approx((64 - learners) * 10000)


def test_seed_servers_batch_their_actors_requests(costs):
    c, _ = costs
    fps, bound = m.predict(c, "seed", 64, 32)  # 63 actors on one server: batches of 63 * 4 observations
    assert bound == "server"
    assert m.publish_s(c, "seed", 2) == 0.0  # (its learner serves: nothing is published)
    assert fps == pytest.approx(1 / (1e-6 + 99e-6 / (63 * 4) + 1 / (40 * 1000)))
    # an actor alone: its envs' raw steps and the 1-actor job's round trip, 4 / (4 / 20000 + t_rt) = 4,000 frames/s
    assert m.predict(c, "seed", 3, 32, learners=2)[0] == pytest.approx(4000)


def test_apex_learners_add_no_updates_under_the_throttle_and_the_shards_bind_last(costs):
    c, _ = costs
    one = m.predict(c, "apex", 256, 32)[0]
    assert m.predict(c, "apex", 256, 32, learners=4)[0] < one  # the same updates, each slower by the allreduce
    how, fps = m.scaled(c, "apex", 256, 32)
    assert fps == pytest.approx(8 * 1e5)  # 247 actors give 4.4M env steps/s; 8 shards of 100K inserts/s bind
    assert float(how.split()[-1]) == pytest.approx(m.updates_per_s(c, "apex", 1, 32, 8) / 8e5, rel=0.05)
