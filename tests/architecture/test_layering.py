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
    "export": {"spectral_core", "trainer"},
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
