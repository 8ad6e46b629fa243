"""MPI runtime: rank layout, communicators, abort-on-exception, polite waiting."""

from drlmpi.runtime.context import Runtime, start
from drlmpi.runtime.guard import install_thread_hook, report_and_abort, set_role, unlink_mpi_segments
from drlmpi.runtime.layout import Layout, RoleSpec, build_layout, parse_layout_arg, share_of
from drlmpi.runtime.wait import barrier, poll, probe, wait, wait_all, wait_any

__all__ = [
    "Layout", "RoleSpec", "Runtime", "barrier", "build_layout", "install_thread_hook", "parse_layout_arg",
    "poll", "probe", "report_and_abort", "set_role", "share_of", "start", "unlink_mpi_segments", "wait", "wait_all",
    "wait_any",
]
