"""Streaming scenarios: fan-out to passive subscribers (4) and replay of a long history (5).

Fan-out: for each subscriber count S, a new Task session on the runtime and on the fan-out
baseline; S subscribers (over up to four processes) subscribe, then one writer process
sends TaskUpdates one at a time. The figure is envelopes delivered to all subscribers
together per second, from the writer's first send to the last arrival.

Replay: a session of ``Scale.replay_envelopes`` accepted envelopes is written straight into
a store (:mod:`.fixtures`), the runtime starts on it, and one client subscribes with
``after_sequence=0`` and times the arrival of all of them, twice: the first subscription
is the session's first use after start-up (so it includes whatever loading the runtime
defers to first use; context, no target), the second one measures the replay itself (the
target). The baseline streams the same number of pre-serialized frames of the same size.
"""

from __future__ import annotations

from .fixtures import build_history
from .load import setup_sessions
from .processes import BaselineProcess, RuntimeProcess
from .report import Figure, compared, counted, median_pair
from .runner import Bench, Scale, Scenario
from .scenario_unary import checked, joined
from .streams import FanOut, Timeline, fan_out, replay
from .workload import SETUP_ENVELOPES, new_session_id

TARGET_RATIO = 0.5


def _fan_out_note(runs: list[tuple[FanOut, FanOut]]) -> str:
    written = " / ".join(f"{ours.written:,} (baseline {theirs.written:,})" for ours, theirs in runs)
    parts = [f"envelopes written per run: {written}"]
    for ours, theirs in runs:
        for who, result in (("runtime", ours), ("baseline", theirs)):
            if result.errors:
                parts.append(f"{who}: {result.errors} errors (first: {result.first_error})")
    return "; ".join(parts)


def fanout(bench: Bench) -> list[Figure]:
    figures = []
    with (
        RuntimeProcess(bench.directory("fanout"), bench.work_dir) as runtime,
        BaselineProcess("fanout", bench.work_dir) as baseline,
    ):
        runtime.start()
        baseline.start()
        for subscribers, messages in bench.scale.fanout:
            timeout = 60.0 + messages * subscribers / 50
            runs = []
            for _ in range(bench.scale.repeats):
                results = []
                for target in (runtime.target, baseline.target):
                    session = (new_session_id(),)
                    checked(setup_sessions(target, session, concurrency=1), "setting up the fan-out session")
                    results.append(
                        fan_out(target, session[0], subscribers, messages, SETUP_ENVELOPES, timeout)
                    )
                ours, theirs = results
                rates = f"runtime {ours.rate:,.0f}/s, baseline {theirs.rate:,.0f}/s"
                bench.log(f"  {subscribers} subscribers, envelopes delivered: {rates}")
                runs.append((ours, theirs))
            rate, baseline_rate, spread = median_pair([(ours.rate, theirs.rate) for ours, theirs in runs])
            figures.append(
                compared(
                    "fanout",
                    f"envelopes delivered/s, 1 writer, {counted(subscribers, 'subscriber')}",
                    rate,
                    "env/s",
                    baseline_rate,
                    at_least=TARGET_RATIO,
                    note=joined(spread, _fan_out_note(runs)),
                )
            )
    return figures


def _rate(result: Timeline) -> float:
    elapsed = result.finished - result.started
    return result.count / elapsed if elapsed > 0 else 0.0


def _replay_note(ours: Timeline, theirs: Timeline, extra: str = "") -> str:
    ours_s, theirs_s = ours.finished - ours.started, theirs.finished - theirs.started
    notes = [f"{ours.count:,} envelopes in {ours_s:.2f}s (baseline {theirs_s:.2f}s)"]
    notes += [f"{who}: {r.first_error}" for who, r in (("runtime", ours), ("baseline", theirs)) if r.errors]
    return "; ".join([*notes, extra] if extra else notes)


def replay_history(bench: Bench) -> list[Figure]:
    count = bench.scale.replay_envelopes
    bench.log(f"  writing a session of {count:,} accepted envelopes")
    fixture = build_history(bench.directory("replay"), 1, count, bench.log)
    timeout = 60.0 + count / 500
    session_id = fixture.session_ids[0]
    with RuntimeProcess(fixture.data_dir, bench.work_dir) as runtime:
        runtime.start()
        cold = replay(runtime.target, session_id, count, timeout)  # first use after start-up
        warm = replay(runtime.target, session_id, count, timeout)
    with BaselineProcess("replay", bench.work_dir, "--replay-count", str(count)) as baseline:
        baseline.start()
        theirs = replay(baseline.target, new_session_id(), count, timeout)
    bench.log(
        f"  {count:,} envelopes: runtime {_rate(warm):,.0f}/s ({_rate(cold):,.0f}/s on first use after "
        f"start-up), baseline {_rate(theirs):,.0f}/s"
    )
    return [
        compared(
            "replay",
            f"replay after_sequence=0 of {count:,} envelopes",
            _rate(warm),
            "env/s",
            _rate(theirs),
            at_least=TARGET_RATIO,
            note=_replay_note(warm, theirs, f"fixture {fixture.build_s:.1f}s"),
        ),
        compared(
            "replay",
            "the same replay as the session's first use after start-up",
            _rate(cold),
            "env/s",
            _rate(theirs),
            note=_replay_note(cold, theirs),
        ),
    ]


def _fanout_estimate(scale: Scale) -> float:
    # runtime deliveries ~1,000 writes/s alone, falling as subscribers are added
    return 4.0 + scale.repeats * sum(
        4.0 + messages * (1 / 700 + subscribers / 15_000) * 2 for subscribers, messages in scale.fanout
    )


def _replay_estimate(scale: Scale) -> float:
    # per envelope: fixture ~60 µs, two runtime replays ~140 µs each, baseline ~60 µs
    return 5.0 + scale.replay_envelopes * 400e-6


SCENARIOS = [
    Scenario(4, "fanout", "fan-out from one writer to 1/10/100 subscribers", fanout, _fanout_estimate),
    Scenario(5, "replay", "replay of a long session from after_sequence=0", replay_history, _replay_estimate),
]
