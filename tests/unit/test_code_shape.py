"""The code's shape, checked: no function in an algorithm file is longer than 60 lines (its docstring not counted),
so one reads at once; McCabe complexity <= 12 is ruff's (pyproject.toml, `make lint`)."""

import ast
from pathlib import Path

ALGOS = Path(__file__).resolve().parents[2] / "src" / "drlmpi" / "algos"
MAX_LINES = 60


def long_functions(source: str, name: str) -> list[str]:
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
        lines = (fn.end_lineno - body[0].lineno + 1) if body else 0
        if lines > MAX_LINES:
            out.append(f"{name}:{fn.lineno} {fn.name}: {lines} lines")
    return out


def test_no_function_in_an_algorithm_is_longer_than_60_lines():
    found = [x for f in sorted(ALGOS.glob("*.py")) for x in long_functions(f.read_text(), f.name)]
    assert not found, found


def test_the_check_would_catch_one():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    assert long_functions(f'def f():\n    """doc\n    more"""\n{body}\n', "x.py")
    assert not long_functions(f'def f():\n    """doc\n    more"""\n{body[: body.rindex(chr(10))]}\n', "x.py")


def test_every_test_file_name_is_unique_across_the_test_folders():
    """pytest's default import mode imports test files by basename: two with one name stop the whole collection."""
    root = Path(__file__).resolve().parents[1]
    names = [p.name for p in root.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
