"""benchmarks/scaling_model.py: the throughput model's formulas on a CSV of known costs, worked by hand."""

import csv
import math
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
    ("allreduce", "mpi", 2, 1000, 0.05, "ms", 1, 20),
    ("allreduce", "mpi", 2, 1_000_000, 2.05, "ms", 6, 3),
    ("memcpy", "numpy", 1, 1000, 0.0, "ms", "nan", "nan"),
    ("memcpy", "numpy", 1, 1_000_000, 0.4, "ms", "nan", "nan"),
    ("cost", "impala", 1, 40, 1000, "updates/s", "nan", "nan"),
    ("cost", "seed", 1, 40, 1000, "updates/s", "nan", "nan"),
    ("cost", "seed-forward", 1, 1, 10000, "forwards/s", "nan", "nan"),
    ("cost", "seed-forward", 1, 64, 1 / (100e-6 + 64e-6), "forwards/s", "nan", "nan"),
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


def test_fits_the_allreduce_and_the_server_forward_from_their_rows(costs):
    c, _ = costs
    # 0.05 ms at 4 KB and 2.05 ms at 4 MB: beta = 2 ms / 3,996,000 B, alpha = 0.05 ms - 4,000 beta
    beta = 2.0e-3 / 3_996_000
    assert c.ar[1] == pytest.approx(beta)
    assert c.ar[0] == pytest.approx(0.05e-3 - 4000 * beta)
    assert c.fwd[1] == pytest.approx(64e-6 / 63)  # 100 us at 1 observation, 164 us at 64
    assert c.copy == pytest.approx(0.4e-3 / 3_996_000)
    assert c.cores == 2 and c.raw["impala"] == 12500 and c.eta["apex"] == 0.9


def test_calibrating_points_come_back_and_the_checks_are_predictions(costs):
    c, rows = costs
    checks = {(x["algo"], x["ranks"]): x for x in m.check(c, rows)}
    for key in (("impala", 2), ("seed", 2), ("ppo", 1)):
        assert checks[key]["calibrates"] and checks[key]["model"] == pytest.approx(checks[key]["measured"])
    assert not checks[("ppo", 2)]["calibrates"] and not checks[("apex", 3)]["calibrates"]
    # Ape-X at 3 ranks on one node: bound by its learner's 400 updates/s at 0.25 updates per env step, less the
    # publication (the gradient's bytes copied once every publish_every updates)
    publish = c.copy * c.grad["apex"] / c.cfg["apex"]["publish_every"]
    assert checks[("apex", 3)]["model"] == pytest.approx(1 / (1 / 400 + publish) / 0.25)
    assert checks[("apex", 3)]["bound"] == "learner"


def test_ppo_adds_the_allreduce_to_each_round_and_is_linear_without_it(costs):
    c, _ = costs
    d = c.cfg["ppo"]
    frames = d["n_steps"] * d["num_envs"]
    round_1 = frames / 2000  # the 1-rank job: acting + learning
    t_ar = c.ar[0] * 1 + 2 * c.ar[1] * c.grad["ppo"]  # 2 ranks on one node: one level
    fps, parts = m.ppo_fps(c, 2, 1)
    assert parts["allreduce"] == pytest.approx(d["epochs"] * d["minibatches"] * t_ar)
    assert fps == pytest.approx(2 * frames / (round_1 + d["epochs"] * d["minibatches"] * t_ar))
    free = m.Costs(**{**c.__dict__, "ar": (0.0, 0.0), "net": (0.0, 0.0)})
    assert m.ppo_fps(free, 1024, 32)[0] == pytest.approx(1024 * 2000)


def test_across_nodes_the_allreduce_pays_the_network_once_a_level(costs):
    c, _ = costs
    b = 1e5
    on_node = c.ar[0] * math.log2(32) + 2 * c.ar[1] * b
    assert m.allreduce_s(c, b, 32, 1) == pytest.approx(on_node)
    assert m.allreduce_s(c, b, 128, 4) == pytest.approx(on_node + 5e-6 * 2 + 2 * b / 10e9)
    assert m.allreduce_s(c, b, 1, 1) == 0.0


def test_one_learner_bounds_impala_and_more_learners_lift_the_bound(costs):
    c, _ = costs
    one, bound = m.predict(c, "impala", 64, 32)
    assert bound == "learner" and one == pytest.approx(40 / (1 / 1000 + m.publish_s(c, "impala", 2)))
    more, _ = m.predict(c, "impala", 64, 32, learners=8)
    assert 6 * one < more < 8 * one  # (the allreduce between them costs a little)
    assert m.scaled(c, "impala", 64, 32) >= more
    assert m.keep_up(c, "impala", 64, 32).endswith("learners")


def test_apex_learners_add_no_updates_under_the_throttle_and_its_ratio_keeps_up(costs):
    c, _ = costs
    one = m.predict(c, "apex", 256, 32)[0]
    assert m.predict(c, "apex", 256, 32, learners=4)[0] <= one  # more learners: the same updates, slower each
    ratio = float(m.keep_up(c, "apex", 256, 32).split()[-1])
    supply = (256 - 1 - 8) * 20000 * 0.9
    assert ratio == pytest.approx(m.updates_per_s(c, "apex", 1, 8) / supply, rel=0.05)  # (2 significant digits)
    assert m.scaled(c, "apex", 256, 32) == pytest.approx(8 * 1e5)  # then 8 shards of 100K inserts/s bind
