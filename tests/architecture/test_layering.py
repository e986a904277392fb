"""The architecture rules of STYLE.md, checked on the source and in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnx", "onnxscript", "shap")
# package -> packages it may import (besides itself and third-party libraries)
ALLOWED = {
    "spectral_core": set(),
    "device_drivers": {"spectral_core"},
    "edge_runtime": {"spectral_core", "device_drivers"},
    "trainer": {"spectral_core"},
    "export": {"spectral_core", "trainer", "edge_runtime"},
}
OURS = {*ALLOWED, "ramanedge"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction(package: str) -> None:
    """No upward or sideways import between packages, anywhere in the file (lazy imports included)."""
    offenders = []
    for py in sorted((REPO / package).rglob("*.py")):
        for mod in _imports(py) & OURS:
            if mod != package and mod not in ALLOWED[package]:
                offenders.append(f"{py.relative_to(REPO)} imports {mod}")
    assert not offenders, offenders


@pytest.mark.parametrize("package", ["spectral_core", "device_drivers", "edge_runtime"])
def test_light_packages_never_import_heavy_libraries(package: str) -> None:
    offenders = []
    for py in sorted((REPO / package).rglob("*.py")):
        for mod in _imports(py) & set(HEAVY):
            offenders.append(f"{py.relative_to(REPO)} imports {mod}")
    assert not offenders, offenders


def _run_without_heavy(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing torch/onnx/shap fails like a base install."""
    blocker = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_cli_builds_and_light_commands_work_without_heavy_libraries(tmp_path: Path) -> None:
    out = tmp_path / "s.npz"
    r = _run_without_heavy(
        "from ramanedge.cli import main\n"
        f"rc = main(['synth', '--out', {str(out)!r}, '--classes', '3', '--per-class', '4', '--points', '50'])\n"
        "assert rc == 0, rc\n"
        f"rc = main(['info', {str(out)!r}])\n"
        "assert rc == 0, rc\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
    )
    assert r.returncode == 0, r.stderr
    assert '"spectra": 12' in r.stdout


def test_heavy_command_names_the_missing_extra(tmp_path: Path) -> None:
    r = _run_without_heavy(
        "from ramanedge.cli import main\n"
        f"sys.exit(main(['train', '--data', 'x.npz', '--out', {str(tmp_path / 'run')!r}]))\n"
    )
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "[train]" in r.stderr and "pip install" in r.stderr


def _module_name(py: Path) -> str:
    parts = list(py.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _internal_imports(py: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``py`` (module ``name``) imports anywhere: at the top, lazily inside a
    function, or only for type checking (a cycle of annotations is a cycle of design all the same)."""
    package = name if py.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(py.read_text(), filename=str(py))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for dotted in targets:
            target = dotted
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def _import_graph(package: str) -> dict[str, set[str]]:
    files = {_module_name(py): py for py in sorted((REPO / package).rglob("*.py"))}
    # only imports written in the code are edges: that importing ``pkg.mod`` runs ``pkg/__init__`` first is
    # the import system's rule, not a dependency of ``pkg.mod`` on what the package re-exports
    return {name: _internal_imports(py, name, set(files)) for name, py in files.items()}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_cycle_between_modules(package: str) -> None:
    """No module imports another that imports it back, directly or round a longer loop (lazy and type-only
    imports included): shared types live in a module both sides import (``edge_runtime.records``)."""
    cycles = _cycles(_import_graph(package))
    assert not cycles, f"import cycles in {package}: {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_daemon_probes_no_object_for_its_attributes() -> None:
    """What the daemon reads of a source, a sink or the ledger is declared (edge_runtime.protocols, the ledger's
    methods): no ``getattr``/``hasattr`` guessing at what an object might offer (STYLE.md, anti-pattern 9)."""
    tree = ast.parse((REPO / "edge_runtime" / "daemon.py").read_text())
    probes = [f"line {n.lineno}: {n.func.id}()" for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
    assert not probes, probes
