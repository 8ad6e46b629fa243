"""R2D3 learns a hard-exploration task from 10 demonstrations: `drlmpi record --policy scripted:mountain_car
--episodes 10` (tests/envs/scripted.py), then `mpiexec -n 4 drlmpi --algo r2d3 --env MountainCar-v0 --set
demos=FILE --total-env-steps 100000 --seed S` reaches a greedy mean return >= -130 over 20 episodes in 2 of 3
seeds. R2D2 on the same budget without demonstrations is in BENCHMARKS.md beside it. Run by `make test-learning`."""

import pytest
from _seeds import train_and_eval
from helpers import DRLMPI, ROOT, run

pytestmark = pytest.mark.learning


@pytest.mark.timeout(3600)
def test_r2d3_mountain_car_from_10_demonstrations_2_of_3_seeds(tmp_path):
    demos = tmp_path / "mountain_car_demos.h5"
    r = run([DRLMPI, "record", "--env", "MountainCar-v0", "--policy", "scripted:mountain_car", "--episodes", "10",
             "--out", str(demos)], timeout=120, env={"PYTHONPATH": str(ROOT / "tests" / "envs")})
    assert r.returncode == 0, r.stderr
    print(r.stdout.strip(), flush=True)
    results = train_and_eval(tmp_path, "r2d3", 4, env_id="MountainCar-v0",
                             extra=("--set", f"demos={demos}", "--total-env-steps", "100000"))
    assert sum(ret >= -130 for ret, _ in results.values()) >= 2, results
