"""The linters and the type checker are part of the test suite, and so is the layering."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pymacp"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is not installed (pip install -e '.[test]')",
)
def test_ruff_lint_and_format() -> None:
    ruff = (
        str(Path(sys.executable).parent / "ruff")
        if (Path(sys.executable).parent / "ruff").exists()
        else "ruff"
    )
    lint = _run(ruff, "check", "src", "tests")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(ruff, "format", "--check", "src", "tests")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# Layers, bottom to top. A module may import its own layer and those below it, never above.
LAYERS = ["kernel", "storage", "runtime", "server", "console", "bus"]
FORBIDDEN_IN_KERNEL = {
    "asyncio",
    "socket",
    "threading",
    "subprocess",
    "grpc",
    "sqlite3",
    "random",
    "secrets",
    "time",
    "uuid",
    "os",
}
# Pure date arithmetic is fine (the JSON mapping formats RFC 3339); reading a clock is not.
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def test_kernel_is_sans_io() -> None:
    for path in (SRC / "kernel").rglob("*.py"):
        bad = {name for name in _imports(path) if name.split(".")[0] in FORBIDDEN_IN_KERNEL}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: the kernel must stay sans-IO"
        tree = ast.parse(path.read_text())
        reads = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_READS
        ]
        assert not reads, f"{path.relative_to(ROOT)} reads a clock at lines {reads}: time is an argument"


def test_imports_point_down_the_layers() -> None:
    for layer_index, layer in enumerate(LAYERS):
        above = {f"pymacp.{name}" for name in LAYERS[layer_index + 1 :]}
        for path in (SRC / layer).rglob("*.py") if (SRC / layer).is_dir() else []:
            for name in _imports(path):
                assert not any(name == a or name.startswith(a + ".") for a in above), (
                    f"{path.relative_to(ROOT)} imports {name}, which is above the {layer} layer"
                )


def test_no_module_is_too_long() -> None:
    for path in SRC.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 650, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"
