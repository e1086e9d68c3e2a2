"""Session summaries survive their JSON encoding exactly, whatever their fields hold."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pymacp.kernel import SessionState
from pymacp.runtime.summary import SessionSummary

OPEN = SessionSummary(
    session_id="5f0c2a4e-8b1d-4c3e-9f2a-000000000001",
    mode="macp.mode.decision.v1",
    state=SessionState.OPEN,
    initiator="agent://orchestrator",
    participants=("agent://a", 'agent://"quoted"', "agent://ünïcode"),
    mode_version="1.0.0",
    configuration_version="cfg-1",
    policy_id="policy.default",
    context_id="ctx",
    extension_keys=("x.one", "x.two"),
    started_at_ms=1_780_000_000_000,
    expires_at_ms=1_780_000_060_000,
    ended_at_ms=None,
    last_ordinal=4,
    next_deadline_ms=1_780_000_060_000,
    activity=(("agent://a", 2, 1_780_000_000_500), ("agent://orchestrator", 2, 1_780_000_000_100)),
)


@pytest.mark.parametrize(
    "summary",
    [
        OPEN,
        replace(OPEN, last_ordinal=5, activity=(("agent://a", 3, 1_780_000_000_900),)),
        replace(OPEN, state=SessionState.RESOLVED, ended_at_ms=1_780_000_001_000, next_deadline_ms=None),
        replace(OPEN, participants=(), extension_keys=(), context_id="", activity=()),
    ],
)
def test_a_summary_round_trips_through_json(summary: SessionSummary) -> None:
    text = summary.to_json()
    assert json.loads(text)["v"] == 1
    assert SessionSummary.from_json(text) == summary


def test_successive_summaries_of_one_session_each_encode_their_own_progress() -> None:
    # The unchanging part of a session's summary is encoded once; the rest must not be reused.
    later = replace(OPEN, last_ordinal=9, expires_at_ms=1_780_000_090_000, activity=())
    assert SessionSummary.from_json(OPEN.to_json()) == OPEN
    assert SessionSummary.from_json(later.to_json()) == later
    assert SessionSummary.from_json(OPEN.to_json()) == OPEN
