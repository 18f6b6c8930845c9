"""The shape of the package: four wings over the foundations, one address per concept.

Built from the source text (``ast``), so it sees every import, lazy ones inside functions too:

- layers: the foundations at the root < ``io`` < ``analysis`` < ``training`` < ``viz`` < ``cli``;
  no module imports a later layer;
- no import circle between modules;
- no ``from module import _private`` across modules;
- nothing inside the package imports through an old module path (``grokinterp.plots``, ...), which
  stay only for users (``grokinterp.compat``);
- no module over ``MAX_LINES`` lines, no repeated run of ``MIN_RUN`` code lines;
- a docstring on every public module, class and function.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grokinterp"
MAX_LINES = 600
MIN_RUN = 6

FOUNDATIONS = {
    "constants", "errors", "config", "tasks", "losses", "forward", "models", "presets", "lazy", "compat", "progress",
    "backend", "memory", "tables", "groups",
}  # fmt: skip
LAYERS = {"foundations": 0, "io": 1, "analysis": 2, "training": 3, "viz": 4, "cli": 5, "package": 6}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS["package"]
    if parts[1] in FOUNDATIONS:
        return LAYERS["foundations"]
    return LAYERS[parts[1]]


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("grokinterp")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("grokinterp"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in MODULES or sub.replace(".", "/") in {m.replace(".", "/") for m in MODULES}:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((base, a.name, node.lineno))
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_import_names_a_module_of_the_package():
    # An old path such as grokinterp.plots or grokinterp.runs resolves for users through
    # grokinterp.compat; inside the package every import names the real address.
    bad = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {target}"
        for m, edges in GRAPH.items()
        for target, _, line in edges
        if target not in MODULES
    ]
    assert not bad, "imports of modules that do not exist (old paths?):\n" + "\n".join(bad)


def test_no_module_imports_a_later_layer():
    bad = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)}) at line {line}"
        for m, edges in GRAPH.items()
        for t, name, line in edges
        # the package's __version__ is read by the CLI and the report: a constant, not an upward edge
        if t in MODULES and layer_of(t) > layer_of(m) and name != "__version__"
    ]
    assert not bad, "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_strongly_connected_finds_a_planted_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(g) == [["a", "b", "c"]]


def test_no_import_circle():
    graph = {
        m: {t for t, _, _ in edges if t in MODULES and t != m and MODULES[t].name != "__init__.py"}
        for m, edges in GRAPH.items()
    }
    assert strongly_connected(graph) == []


def test_no_private_name_imported_from_another_module():
    bad = [
        f"{m}:{line} imports {name} from {t}"
        for m, edges in GRAPH.items()
        for t, name, line in edges
        if name is not None and name.startswith("_") and not name.startswith("__") and t != m
    ]
    assert not bad, "\n".join(bad)


def test_no_module_is_too_long():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that carry code: no blank lines, comments, lone punctuation, imports or docstrings
    (the same lines ``duplicates`` passes over), with white space folded."""
    text = path.read_text()
    skip: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            skip.update(range(first.lineno, first.end_lineno + 1))
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        s = " ".join(line.split())
        if i in skip or not s or s.startswith("#") or re.fullmatch(r"[\[\](){}:,]+", s):
            continue
        if s.startswith(("import ", "from ")) or s in ("else:", "try:", "finally:", "return", "pass"):
            continue
        out.append((i, s))
    return out


def repeated_runs(files: dict[str, Path], n: int = MIN_RUN) -> list[str]:
    """Places where ``n`` consecutive code lines stand again elsewhere, to the letter."""
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for name, path in files.items():
        lines = code_lines(path)
        for k in range(len(lines) - n + 1):
            run = tuple(s for _, s in lines[k : k + n])
            seen[run].append(f"{name}:{lines[k][0]}")
    return [" ~ ".join(places) for places in seen.values() if len(places) > 1]


def test_repeated_runs_finds_a_planted_copy(tmp_path):
    block = "\n".join(f"x{i} = compute({i}) + {i}" for i in range(7))
    indented = "\n".join("    " + line for line in block.splitlines())
    (tmp_path / "a.py").write_text(f"def f():\n{indented}\n")
    (tmp_path / "b.py").write_text("y = 1\n" + block + "\n")
    assert repeated_runs({"a": tmp_path / "a.py", "b": tmp_path / "b.py"})


def test_no_repeated_block_of_code():
    runs = repeated_runs({m: p for m, p in MODULES.items()})
    assert not runs, f"{len(runs)} repeated runs of {MIN_RUN} lines:\n" + "\n".join(runs[:20])


def missing_docstrings(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text())
    out = [] if ast.get_docstring(tree) else [f"{module} (module)"]

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                public = not child.name.startswith("_")
                if public and not ast.get_docstring(child) and not _is_trivial(child):
                    out.append(f"{module}.{prefix}{child.name} (line {child.lineno})")
                if public and isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")

    walk(tree, "")
    return out


def _is_trivial(node: ast.AST) -> bool:
    """Overrides of a documented protocol (``forward``, ``__call__`` ...) and property setters."""
    if isinstance(node, ast.ClassDef):
        return False
    decorators = {ast.unparse(d) for d in node.decorator_list}
    return (node.name in {"forward", "setup", "main"} and len(node.body) <= 3) or any(
        d.endswith(".setter") for d in decorators
    )


def test_every_public_name_has_a_docstring():
    missing = [x for m in MODULES for x in missing_docstrings(m)]
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("old", ["plots", "runs", "measures", "fourier", "explorer", "rundir", "ensemble"])
def test_old_module_paths_resolve_to_the_new_modules(old):
    from grokinterp import compat

    code = (
        "import importlib, warnings; warnings.simplefilter('ignore');"
        f"a = importlib.import_module('grokinterp.{old}');"
        f"b = importlib.import_module({compat.OLD_PATHS[old]!r});"
        f"import grokinterp; c = getattr(grokinterp, {old!r});"
        "assert a is b is c, (a, b, c); print(a.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == compat.OLD_PATHS[old]


def test_package_dir_lists_the_api():
    import grokinterp

    names = dir(grokinterp)
    for name in ("load_run", "analyze_run", "explore", "train", "RunConfig", "io", "analysis", "training", "viz"):
        assert name in names
        assert getattr(grokinterp, name) is not None
    assert "annotations" not in names


def test_wings_export_their_public_names():
    from grokinterp import analysis, training, viz

    assert training.Trainer is importlib.import_module("grokinterp.training.trainer").Trainer
    assert analysis.analyze_run is importlib.import_module("grokinterp.analysis.run_analysis").analyze_run
    assert "plot_loss" in dir(viz) and callable(viz.plot_loss)
