"""Read the README, or one of its ``## `` sections, for tests that keep the docs true."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title_start: str) -> str:
    """The ``## `` section whose title starts with ``title_start``, up to the next one."""
    text = README.read_text()
    heading = f"\n## {title_start}"
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]
