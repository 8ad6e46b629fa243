"""No pickle anywhere in the package: no lowercase (pickling) mpi4py call, whatever its receiver is called, and no
pickle-based serialisation. Every message is a buffer (uppercase) call or a JSON buffer collective (comm.control).

The check reads every module's syntax tree: any call of a method named like one of mpi4py's lowercase
communication methods is an offender, unless it is torch's `Tensor.gather(dim, index)` (an int first argument)
or listed in ALLOWED with the reason it is not MPI. The package's own classes avoid those names (a trajectory
writer `post`s, a weights plane `publish`es, an inference server `collect`s), so nothing hides behind them.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "drlmpi"
LOWERCASE = {  # mpi4py's pickling communication methods (Comm, Intracomm, Win, File)
    "send", "recv", "isend", "irecv", "ssend", "issend", "bsend", "ibsend", "rsend", "irsend", "sendrecv", "mrecv",
    "bcast", "ibcast", "gather", "igather", "scatter", "iscatter", "allgather", "iallgather", "alltoall",
    "ialltoall", "reduce", "ireduce", "allreduce", "iallreduce", "scan", "exscan", "reduce_scatter",
    "reduce_scatter_block", "neighbor_allgather", "neighbor_alltoall"}
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
SERIALISERS = {"torch.save", "torch.load", "MPI.pickle", "pickle.dumps", "pickle.loads"}
ALLOWED = {("report.py", "ax.scatter")}  # matplotlib's scatter plot


def offenders_in(source: str, name: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m.split(".")[0] in PICKLERS for m in mods):
                out.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Attribute) and node.attr == "pickle":  # mpi4py's MPI.pickle (its serialiser)
            out.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func in SERIALISERS or any(k.arg == "allow_pickle" for k in node.keywords):
            out.append(f"{name}:{node.lineno}: {func}")
        if not isinstance(node.func, ast.Attribute) or node.func.attr not in LOWERCASE or (name, func) in ALLOWED:
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.UnaryOp) and isinstance(first.op, ast.USub):  # -1: a negative int constant
            first = first.operand
        torch_gather = node.func.attr == "gather" and (isinstance(first, ast.Constant) and isinstance(first.value, int)
                                                       or any(k.arg == "dim" for k in node.keywords))
        if not torch_gather:
            out.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return out


def test_the_package_pickles_nothing():
    offenders = []
    for f in sorted(SRC.rglob("*.py")):
        offenders += offenders_in(f.read_text(), str(f.relative_to(SRC)))
    assert not offenders, "\n".join(offenders)


def test_the_check_would_catch_one():
    def caught(code):
        return bool(offenders_in(code, "x.py"))

    for code in ("self.comm.send(vec, dest=1)", "world.bcast(x, root=0)", "rt.channels.control.send(x, dest=0)",
                 "c.recv(source=1)", "MPI.COMM_WORLD.allgather(name)", "anything.gather(obj, root=0)",
                 "x = f().iallreduce(v)", "comm.gather(-x, root=0)", "import pickle", "from cloudpickle import dumps",
                 "torch.save(net, p)",
                 "np.load(p, allow_pickle=True)", "MPI.pickle.__init__(dumps)"):
        assert caught(code), code
    for code in ("comm.Send(vec, dest=1)", "net(x).gather(1, a)", "q.gather(-1, a)", "t.gather(dim=0, index=i)",
                 "comm.Allgatherv([b, MPI.BYTE], out)", "writer.post(slot, 3)", "import json"):
        assert not caught(code), code
