"""Invariants of the console core: it only observes, and its projection covers every event type."""

from __future__ import annotations

import ast
from pathlib import Path

from pymacp.console import events as console_events
from pymacp.console.projection import REDUCERS
from readme_support import readme_section

CONSOLE = Path(__file__).resolve().parents[2] / "src" / "pymacp" / "console"
# Everything through which an envelope could be sent on an agent's behalf: the Send RPC, the
# SDK's send helpers and session classes, and envelope frames on a StreamSession.
FORBIDDEN_CALLS = {"Send", "send", "send_signal", "send_progress", "open_stream", "send_subscribe"}
FORBIDDEN_IMPORTS = ("macp_sdk", "pymacp.runtime", "pymacp.server")


def console_sources() -> list[Path]:
    sources = sorted(CONSOLE.rglob("*.py"))
    assert len(sources) > 10, f"expected the console package at {CONSOLE}"
    return sources


def test_the_console_never_sends_an_envelope() -> None:
    offenders: list[str] = []
    for path in console_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS:
                offenders.append(f"{path.name}:{node.lineno} uses .{node.attr}")
            # A dynamic call (getattr(stub, "Send")) still has to name the method.
            if isinstance(node, ast.Constant) and node.value in ("Send", "/macp.v1.MACPRuntimeService/Send"):
                offenders.append(f"{path.name}:{node.lineno} names the Send RPC")
            if isinstance(node, ast.keyword) and node.arg == "envelope":
                offenders.append(f"{path.name}:{node.lineno} builds a frame with an envelope")
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                offenders += [
                    f"{path.name}:{node.lineno} imports {n}" for n in names if n.startswith(FORBIDDEN_IMPORTS)
                ]
    assert not offenders, "the console must only observe:\n" + "\n".join(offenders)


def test_the_no_send_check_would_catch_a_send() -> None:
    tree = ast.parse("async def f(stub):\n    await stub.Send(request)\n")
    assert any(isinstance(n, ast.Attribute) and n.attr in FORBIDDEN_CALLS for n in ast.walk(tree))


def test_every_canonical_event_type_has_a_reducer_and_every_reducer_a_canonical_type() -> None:
    canonical = set(console_events.EVENT_TYPES)
    assert canonical - set(REDUCERS) == set(), "event types without a reducer"
    assert set(REDUCERS) - canonical == set(), "reducers for types that are not canonical"


def test_every_envelope_mapping_names_a_canonical_type() -> None:
    mapped = {*console_events.COMMON_TYPES.values(), *console_events.MODE_TYPES.values()}
    assert mapped | {console_events.FALLBACK_TYPE} <= set(console_events.EVENT_TYPES)
    assert set(console_events.CONSOLE_TYPES) <= set(console_events.EVENT_TYPES)


def test_the_documented_event_types_are_the_canonical_ones() -> None:
    doc = readme_section("The observer console")
    cells = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in doc.splitlines()
        if line.startswith("| `")
    ]
    rows = {row[0].strip("`"): row[2] for row in cells if len(row) == 3 and row[1] in ("envelope", "console")}
    assert rows == dict(console_events.EVENT_TYPES)
