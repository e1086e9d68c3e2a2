"""The core's own Prometheus metrics, in a registry of their own (the HTTP layer merges it)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from .models import RunEvent


class ConsoleMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "pymacp_console_events_stored_total",
            "Run events stored, by canonical type (duplicates skipped are not counted).",
            ["type"],
            registry=self.registry,
        )
        self.status_changes = Counter(
            "pymacp_console_run_status_changes_total",
            "Run status transitions, by the status entered.",
            ["status"],
            registry=self.registry,
        )
        self.runs_created = Counter(
            "pymacp_console_runs_created_total",
            "Runs created, by source (api or discovered).",
            ["source"],
            registry=self.registry,
        )
        self.resubscribes = Counter(
            "pymacp_console_stream_resubscribes_total",
            "Session streams re-opened after they ended or failed (resumed by ordinal).",
            registry=self.registry,
        )
        self.observers = Gauge(
            "pymacp_console_observers_active",
            "Runs being observed right now.",
            registry=self.registry,
        )
        self.runtime_ready = Gauge(
            "pymacp_console_runtime_ready",
            "1 when the runtime's channel is connected and the console's credentials work.",
            registry=self.registry,
        )

    def events_stored(self, events: Iterable[RunEvent]) -> None:
        for event in events:
            self.events.labels(event.type).inc()
            if event.type == "run.status.changed":
                self.status_changes.labels(str(event.data.get("to"))).inc()
