"""The layering, read from the source (every import, at module level or inside a function):

- no import cycles among the project's modules;
- the harness (eval/) imports no track package (baseline, encoders, finetune, prompting): tracks import eval/, never
  the reverse, and the registry (eval/tracks.py) names them only as strings;
- the tracks import each other never.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("eval", "baseline", "encoders", "finetune", "prompting")
TRACK_PACKAGES = ("baseline", "encoders", "finetune", "prompting")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (`from eval import stats`: eval.decide.stats; `from eval.x import y`:
    eval.x)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in modules:
                out.add(name)
            elif name.rsplit(".", 1)[0] in modules and not any(name.startswith(m + ".") for m in out if m != name):
                out.add(name.rsplit(".", 1)[0])
    return out - {_module(path)}


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {_module(p) for p in files}
    return {_module(p): {m for m in _imports(p, modules) if m not in PACKAGES} for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_harness_imports_no_track() -> None:
    bad = {m: sorted(i for i in deps if i.split(".")[0] in TRACK_PACKAGES)
           for m, deps in _graph().items() if m.split(".")[0] == "eval"}
    assert not {m: d for m, d in bad.items() if d}


def test_tracks_do_not_import_each_other() -> None:
    for m, deps in _graph().items():
        own = m.split(".")[0]
        if own in TRACK_PACKAGES:
            others = sorted(d for d in deps if d.split(".")[0] in TRACK_PACKAGES and d.split(".")[0] != own)
            assert not others, f"{m} imports {others}"


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_harness_names_no_track_outside_the_registry() -> None:
    """eval/ asks the Track for every fact; only eval/tracks.py (the registry) and the entry script eval/baseline.py
    (the command users know, which runs baseline/train.py) spell a track's name or module."""
    allowed = {REPO / "eval" / "tracks.py", REPO / "eval" / "baseline.py"}
    pattern = re.compile(rf"^({'|'.join(TRACK_PACKAGES)})([./:]|$)")
    hits = [f"{p.relative_to(REPO)}:{line}: {s!r}" for p in sorted((REPO / "eval").rglob("*.py")) if p not in allowed
            for line, s in _strings(p) if pattern.match(s)]
    assert not hits, hits
