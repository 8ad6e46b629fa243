"""No pickling (lowercase) mpi4py call in the data planes: weights and transitions travel as buffers."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "drlmpi"
PICKLING = re.compile(
    r"\b(\w*comm|world|node|leaders|channels\.\w+|\w*_ch)\."
    r"(send|recv|isend|irecv|bcast|gather|scatter|allgather|alltoall|reduce|allreduce|sendrecv)\("
)


def test_data_plane_modules_use_buffer_calls_only():
    offenders = []
    for d in ("comm", "replay", "algos"):
        for f in (SRC / d).rglob("*.py"):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if PICKLING.search(code):
                    offenders.append(f"{f.relative_to(SRC)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_check_would_catch_one():
    assert PICKLING.search("self.comm.send(vec, dest=1)") and PICKLING.search("world.bcast(x, root=0)")
    assert PICKLING.search("rt.channels.control.send(x, dest=0)") and PICKLING.search("control_ch.recv(source=1)")
    assert not PICKLING.search("comm.Send(vec, dest=1)") and not PICKLING.search("net(x).gather(1, a)")
