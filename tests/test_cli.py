from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pymacp import __version__
from pymacp.cli import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_describes_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:", 1)[1].split()
    for name in ("agents", "bench", "bus", "console", "serve"):
        assert name in commands


def test_the_bus_starts_without_loading_the_console_web_stack() -> None:
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from pymacp.cli import main\n"
        "assert CliRunner().invoke(main, ['bus', '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'pymacp.console') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serve_help_names_the_environment_variables() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for name in (
        "MACP_BIND_ADDR",
        "MACP_DATA_DIR",
        "MACP_MEMORY_ONLY",
        "MACP_ALLOW_INSECURE",
        "MACP_AUTH_TOKENS_JSON",
    ):
        assert name in result.output


def test_serve_refuses_to_run_without_tls_or_insecure_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACP_")}
    env["MACP_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pymacp", "serve"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TLS is required" in result.stderr
