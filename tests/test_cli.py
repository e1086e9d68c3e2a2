from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pymacp import __version__
from pymacp.cli import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_serve_stub_says_it_is_not_available() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pymacp", "serve"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "not implemented yet" in result.stderr


def test_help_describes_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
