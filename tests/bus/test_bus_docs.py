"""The README's bus section tells the truth: its config is valid and its shell example prints
what it shows (its Python examples run in tests/test_readme.py, with every README block)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pymacp.bus.config import parse_config
from readme_support import readme_section

DOC = readme_section("The agent bus")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def _without_pids(text: str) -> list[dict[str, object]]:
    return [json.loads(re.sub(r'"pid":\d+', '"pid":0', line)) for line in text.strip().splitlines()]


def test_the_quick_start_prints_what_the_doc_shows(tmp_path: Path) -> None:
    [config] = _blocks("json")
    parse_config(config)
    (tmp_path / "bus.json").write_text(config)
    [command] = [block for block in _blocks("sh") if "pymacp bus --config bus.json" in block]
    [expected] = _blocks("text")
    # the doc's commands as a user runs them: pymacp and python3 from this environment
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, target in (("pymacp", "-m pymacp"), ("python3", "")):
        (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n')
        (shims / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _without_pids(result.stdout) == _without_pids(expected)
