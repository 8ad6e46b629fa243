"""Central inference plane under mpiexec: the server's batching rules on one host and across pretend hosts."""

import sys

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("per_node", [0, 1])
def test_server_answers_lone_request_at_timeout_full_batch_at_once_and_never_waits_for_finished(per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(4, [sys.executable, script("inference_plane.py")], timeout=120, env=env)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr
    print(next(line for line in r.stdout.splitlines() if line.startswith("inference server:")))
