"""--set wandb=PROJECT: the metrics rows also go to a Weights & Biases run, offline with no credentials (files under
the run directory), the same run across resumes; without the package, one line and exit 2 before the job starts."""

import pytest
from helpers import DRLMPI, ROOT, run

ARGS = ["--algo", "dqn", "--env", "CartPole-v1", "--set", "log_every=0.2", "--set", "wandb=drlmpi-test"]
OFFLINE = {"WANDB_MODE": "", "WANDB_API_KEY": "", "WANDB_SILENT": "true"}


def test_rows_go_to_an_offline_wandb_run_that_a_resume_continues_and_a_fresh_start_does_not(tmp_path):
    d = tmp_path / "run"
    r = run([DRLMPI, *ARGS, "--total-env-steps", "1500", "--run-dir", str(d)], timeout=180, env=OFFLINE)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = (d / "wandb-id").read_text().strip()
    files = list((d / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1, list((d / "wandb").iterdir())
    data = files[0].read_bytes()
    assert b"recent_return" in data and b"frames_per_s" in data  # (metric columns: the config has neither)
    r = run([DRLMPI, *ARGS, "--total-env-steps", "3000", "--run-dir", str(d), "--resume", "auto"], timeout=180,
            env=OFFLINE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (d / "wandb-id").read_text().strip() == run_id
    assert len(list((d / "wandb").glob(f"offline-run-*-{run_id}"))) == 2  # two sessions of one run
    r = run([DRLMPI, *ARGS, "--total-env-steps", "300", "--run-dir", str(d / "again")], timeout=180, env=OFFLINE)
    assert r.returncode == 0 and (d / "again" / "wandb-id").read_text().strip() != run_id, r.stderr


@pytest.mark.parametrize("sets,env,fragment", [(["--set", "wandb=team/project"], {}, "a W&B project name"),
                                               ([], {"WANDB_MODE": "Offline"}, "WANDB_MODE='Offline'")])
def test_a_project_or_mode_wandb_refuses_is_one_line_before_the_job(tmp_path, sets, env, fragment):
    r = run([DRLMPI, *ARGS, *sets, "--total-env-steps", "300", "--run-dir", str(tmp_path / "run")], timeout=120,
            env={**OFFLINE, **env})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("set_wandb", [True, False])
def test_without_the_package_wandb_is_one_line_and_exit_2(tmp_path, set_wandb):
    hidden = {"PYTHONPATH": str(ROOT / "tests" / "envs" / "no_wandb"), **OFFLINE}
    args = ARGS if set_wandb else ARGS[:-2]
    r = run([DRLMPI, *args, "--total-env-steps", "300", "--run-dir", str(tmp_path / "run")], timeout=120, env=hidden)
    if set_wandb:
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "pip install 'drlmpi[wandb]'" in r.stderr and not (tmp_path / "run" / "metrics.csv").exists()
    else:
        assert r.returncode == 0, r.stderr  # (no wandb asked for: the package is never imported)
