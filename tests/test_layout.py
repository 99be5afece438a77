"""The package's layout holds: imports go only downward, at the top of each file, and files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pela"

# Lowest first: a module may import from its own level or any level below, never from above.
LEVELS = [
    {"errors", "version", "metadata", "utils", "linalg"},
    {"layers"},
    {"arch"},
    {"features"},
    {"data", "models"},
    {"compression"},
    {"evaluation", "deploy"},
    {"training"},
    {"bench"},
    {"demo"},
    {"cli"},
    {"__init__", "__main__"},
]
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    """The top-level room of a module: ``pela.training.loop`` -> ``training``; ``pela`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(module: str) -> int:
    room = _room(module)
    found = [i for i, rooms in enumerate(LEVELS) if room in rooms]
    assert found, f"{module} is in no level of LEVELS: place its package there"
    return found[0]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported pela module, line, at module level) for every import of pela in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write the absolute module")
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            if name == "pela" or name.startswith("pela."):
                if isinstance(node, ast.ImportFrom):  # ``from pela.arch import blocks`` imports pela.arch.blocks
                    for alias in node.names:
                        sub = f"{name}.{alias.name}"
                        path_of = SRC.parent / sub.replace(".", "/")
                        is_module = path_of.with_suffix(".py").exists() or (path_of / "__init__.py").exists()
                        found.append((sub if is_module else name, node.lineno, id(node) in top))
                else:
                    found.append((name, node.lineno, id(node) in top))
    return found


FILES = sorted(SRC.rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    graph = {}
    for f in FILES:
        graph[_module(f)] = {m for m, _, _ in _imports(f) if m != _module(f)}
    return graph


def test_every_import_of_pela_is_at_the_top_and_goes_down():
    problems = []
    for f in FILES:
        me = _module(f)
        for target, line, at_top in _imports(f):
            if not at_top:
                problems.append(f"{f.relative_to(SRC)}:{line} imports {target} inside a function")
            elif target != "pela" and _level(target) > _level(me):
                problems.append(f"{f.relative_to(SRC)}:{line} imports {target}, which is above it")
            elif target == "pela" and me not in ("pela", "pela.__main__"):
                problems.append(f"{f.relative_to(SRC)}:{line} imports the package root")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n not in graph:
                continue
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_files_and_functions_are_small(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name} has {len(lines)} lines (at most {MAX_FILE_LINES})"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - first + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} has {length} lines (at most {MAX_FUNCTION_LINES})"


def test_the_layout_check_can_fail(tmp_path):
    """The walker sees an upward import and one inside a function (so the checks above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from pela.training.loop import fit\n\ndef f():\n    from pela.cli.app import main\n")
    found = _imports(bad)
    assert found == [("pela.training.loop", 1, True), ("pela.cli.app", 4, False)]
    assert _level("pela.cli.app") > _level("pela.training.loop") > _level("pela.arch.blocks")


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent that is a module, not a package
        return False


def test_docstrings_name_only_what_exists():
    """A backquoted ``pela.x.y`` in the source names a module, or an attribute of one, that exists."""
    import importlib
    import re

    missing = []
    for f in FILES:
        for match in re.finditer(r"`(pela(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", f.read_text()):
            parts = match.group(1).split(".")
            if parts[-1] in ("json", "py"):  # a file's name (pela.json, modeling_pela.py)
                continue
            found = next((i for i in range(len(parts), 0, -1) if _is_module(".".join(parts[:i]))), 0)
            obj = importlib.import_module(".".join(parts[:found])) if found else None
            for attr in parts[found:] if obj is not None else ():
                obj = getattr(obj, attr, None)
            if obj is None:
                missing.append(f"{f.relative_to(SRC)}: {match.group(1)}")
    assert not missing, "\n".join(missing)


# modules whose tests still live in other files (the CLI's and the stages' end-to-end tests): a new
# module gets a test file of its own, and this list only shrinks
TESTED_ELSEWHERE = {"arch/heads.py", "arch/towers.py", "cli/common.py", "compression/allocate.py",
                    "evaluation/generation.py", "layers/hf_modeling.py", "models/hf_source.py",
                    "models/pela_dir.py", "models/timm_source.py"}


def test_tests_mirror_the_modules():
    """Each module of src/pela has tests/.../test_<module>.py, apart from `TESTED_ELSEWHERE`."""
    modules = [p for p in SRC.rglob("*.py") if p.name not in ("__init__.py", "__main__.py", "version.py")]
    tests = {p.name for p in SRC.parents[1].joinpath("tests").rglob("test_*.py")}
    missing = {str(p.relative_to(SRC)) for p in modules if f"test_{p.stem}.py" not in tests}
    assert missing <= TESTED_ELSEWHERE, sorted(missing - TESTED_ELSEWHERE)
    assert len(modules) - len(missing) >= 0.9 * len(modules)
    assert not TESTED_ELSEWHERE - missing, f"give them up: {sorted(TESTED_ELSEWHERE - missing)}"
