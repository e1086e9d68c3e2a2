"""ConsoleCore: the facade the HTTP layer uses. Wiring only; the work lives in sibling modules.

store/        runs and events (SQLite or PostgreSQL), one transaction per write
observer.py   one task per unfinished run: attach, follow, finish
discovery.py  WatchSessions + ListSessions: runs for sessions started elsewhere
signals.py    correlated Signals from WatchSignals
projection.py the per-run view, folded from events
cancel.py     options A (callback) and B (delegated CancelSession)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client
from macp.v1 import core_pb2

from .cancel import CancelContext, CancelRefused, cancel_run
from .descriptor import DescriptorError, RunDescriptor
from .discovery import Discovery
from .events import NewEvent
from .feed import ChangeFeed, FeedHub
from .metrics import ConsoleMetrics
from .models import RUN_SOURCES, RUN_STATUSES, Run, RunEvent, RunPage
from .observer import Observer, Timing
from .projection import View, fold
from .recorder import Recorder
from .runtime_client import RuntimeClient
from .signals import follow_signals
from .store import NewRun, SessionTaken, make_store

__all__ = ["DEFAULT_DATABASE_URL", "CancelRefused", "ChangeFeed", "ConsoleCore", "CoreConfig", "RunConflict"]

log = logging.getLogger("pymacp.console")

# SQLAlchemy-style: three slashes and a relative path, four for an absolute one.
DEFAULT_DATABASE_URL = "sqlite:///.macp-data/console.sqlite3"
MAX_PAGE = 200
MAX_EVENTS_PAGE = 1000
VIEW_CACHE_RUNS = 256
RESTART_DELAY_S = 1.0
CONCURRENT_DRAINS = 8  # ended sessions whose remaining history is read at the same time


@dataclass(frozen=True, slots=True)
class CoreConfig:
    runtime_target: str = "127.0.0.1:50051"
    runtime_token: str | None = None
    runtime_tls: bool = False
    runtime_root_cert: str | None = None  # PEM file for a private CA; None uses the system roots
    database_url: str = DEFAULT_DATABASE_URL
    poll_base_ms: int = 100
    poll_max_ms: int = 1000
    poll_timeout_ms: int = 60000
    discovery: bool = True
    reconcile_ms: int = 5000  # GetSession check of each open session between pushed updates


class RunConflict(DescriptorError):
    """POST /runs for a session another API run already observes.

    A :class:`DescriptorError` (the body's ``session.sessionId`` cannot be used), so a caller
    that only knows descriptor errors still answers 400; ``http_status`` says 409 is meant.
    """

    http_status = 409
    code = "SESSION_ALREADY_OBSERVED"

    def __init__(self, message: str, run: Run) -> None:
        super().__init__((("session.sessionId", message),))
        self.args = (message,)  # str(exc) is the sentence itself, not a validation summary
        self.run = run


class ConsoleCore:
    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self._store = make_store(config.database_url)  # ValueError names a bad URL
        self._hub = FeedHub()
        self._metrics = ConsoleMetrics()
        self._recorder = Recorder(self._store, self._hub, self._metrics)
        self._client = RuntimeClient(
            config.runtime_target,
            config.runtime_token,
            tls=config.runtime_tls,
            root_cert=config.runtime_root_cert,
        )
        self._timing = Timing(
            poll_base_s=config.poll_base_ms / 1000,
            poll_max_s=config.poll_max_ms / 1000,
            poll_timeout_ms=config.poll_timeout_ms,
            reconcile_s=config.reconcile_ms / 1000,
        )
        self._observers: dict[str, tuple[Observer, asyncio.Task[None]]] = {}
        self._drains = asyncio.Semaphore(CONCURRENT_DRAINS)
        self._background: list[asyncio.Task[None]] = []
        self._views: OrderedDict[str, View] = OrderedDict()
        self._discovery: Discovery | None = None
        self._started = False
        self._metrics.runtime_ready.set_function(lambda: 1.0 if self._client.ready else 0.0)
        self._metrics.observers.set_function(lambda: float(len(self._observers)))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._store.open()
        await self._client.start()
        self._started = True
        for run in await self._store.unfinished_runs():
            self._observe(run)
        if self.config.discovery:
            self._discovery = Discovery(self._client, self._on_session)
            self._spawn(self._discovery.run(), "console-discovery")
            self._spawn(follow_signals(self._client, self._on_signal), "console-signals")

    async def aclose(self) -> None:
        tasks = [task for _, task in self._observers.values()] + self._background
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._observers.clear()
        self._background.clear()
        self._hub.close_all()
        await self._client.aclose()
        await self._store.close()
        self._started = False

    def _spawn(self, work: Any, name: str) -> None:
        self._background.append(asyncio.create_task(work, name=name))

    @property
    def runtime_ready(self) -> bool:
        return self._client.ready

    @property
    def store_ready(self) -> bool:
        return self._store.ready

    # ------------------------------------------------------------------ observers
    def _observe(self, run: Run) -> None:
        if run.terminal or run.run_id in self._observers or not self._started:
            return
        observer = Observer(run, self._client, self._recorder, self._timing, self._drains)
        task = asyncio.create_task(self._supervise(observer, run), name=f"console-observer-{run.run_id}")
        self._observers[run.run_id] = (observer, task)

    async def _supervise(self, observer: Observer, run: Run) -> None:
        """Run the observer until its run ends; an unexpected crash restarts it, it never loses the run."""
        try:
            while True:
                try:
                    await observer.run()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("observer of run %s crashed; restarting it", run.run_id)
                    await asyncio.sleep(RESTART_DELAY_S)
                    continue
                current = await self._store.get_run(run.run_id)
                if current is None or current.terminal:
                    return
                await asyncio.sleep(RESTART_DELAY_S)  # ended without ending the run: look again soon
        finally:
            entry = self._observers.get(run.run_id)
            if entry is not None and entry[0] is observer:
                del self._observers[run.run_id]

    async def _on_session(self, metadata: core_pb2.SessionMetadata) -> None:
        run = await self._store.run_for_session(metadata.session_id)
        if run is None:
            now = self._recorder.clock()
            new = NewRun(
                run_id=str(uuid.uuid4()),
                session_id=metadata.session_id,
                status="starting",
                source="discovered",
                mode_name=metadata.mode or None,
                participants=tuple(metadata.participants),
                session_state=None,
                descriptor=None,
                cancel_bearer=None,
                idempotency_key=None,
                tags=(),
                created_at_ms=now,
            )
            try:
                run, created = await self._store.create_run(new, now)
            except SessionTaken as taken:
                run, created = taken.run, False
            if created:
                self._metrics.runs_created.labels("discovered").inc()
                self._hub.publish(run.run_id)
        entry = self._observers.get(run.run_id)
        if entry is not None:
            entry[0].notify(metadata)
        else:
            self._observe(run)

    async def _on_signal(self, session_id: str, event: NewEvent) -> None:
        run = await self._store.run_for_session(session_id)
        if run is not None:
            await self._recorder.append(run.run_id, [event])

    # ------------------------------------------------------------------ runs API
    async def submit(self, descriptor: RunDescriptor) -> tuple[Run, bool]:
        session_id = descriptor.session.session_id or str(uuid.uuid4())
        callback = descriptor.cancel_callback
        now = self._recorder.clock()
        new = NewRun(
            run_id=str(uuid.uuid4()),
            session_id=session_id,
            status="queued",
            source="api",
            mode_name=descriptor.session.mode_name,
            participants=descriptor.session.participants,
            session_state=None,
            descriptor=descriptor.redacted(session_id),
            cancel_bearer=callback.bearer if callback else None,
            idempotency_key=descriptor.idempotency_key,
            tags=descriptor.tags,
            created_at_ms=now,
        )
        try:
            run, created = await self._store.create_run(new, now)
        except SessionTaken as taken:
            raise RunConflict(
                f"session {session_id} is already observed by run {taken.run.run_id}; "
                "GET that run, or omit session.sessionId to get a fresh session",
                taken.run,
            ) from None
        if created:
            self._metrics.runs_created.labels("api").inc()
            self._hub.publish(run.run_id)
            self._observe(run)
        return run, created

    async def list_runs(
        self,
        *,
        status: str | None = None,
        mode: str | None = None,
        source: str | None = None,
        session_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage:
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(RUN_STATUSES)}")
        if source is not None and source not in RUN_SOURCES:
            raise ValueError(f"unknown source {source!r}; one of {', '.join(RUN_SOURCES)}")
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._store.list_runs(
            status=status,
            mode=mode,
            source=source,
            session_id=session_id,
            before_position=None if cursor is None else _decode_cursor(cursor),
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1][0]) if more and rows else None
        return RunPage(runs=tuple(run for _, run in rows), next_cursor=next_cursor)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._store.get_run(run_id)

    async def events(self, run_id: str, *, after_seq: int = 0, limit: int = 500) -> list[RunEvent]:
        if after_seq < 0:
            raise ValueError("afterSeq must be 0 or more")
        return await self._store.events(run_id, after_seq, max(1, min(limit, MAX_EVENTS_PAGE)))

    async def view(self, run_id: str) -> Mapping[str, Any] | None:
        run = await self._store.get_run(run_id)
        if run is None:
            return None
        view = self._views.pop(run_id, None) or View()
        while view.last_seq < run.last_seq:
            page = await self._store.events(run_id, view.last_seq, MAX_EVENTS_PAGE)
            if not page:
                break
            fold(page, view)
        self._views[run_id] = view
        while len(self._views) > VIEW_CACHE_RUNS:
            self._views.popitem(last=False)
        return {"runId": run.run_id, "sessionId": run.session_id, "runStatus": run.status, **view.to_json()}

    def changes(self, run_id: str | None) -> ChangeFeed:
        return self._hub.open(run_id)

    async def cancel(self, run_id: str, reason: str | None) -> Run:
        run = await self._store.get_run(run_id)
        if run is None:
            raise CancelRefused(404, "RUN_NOT_FOUND", f"no run with id {run_id!r}")
        bearer = await self._store.cancel_bearer(run_id)
        context = CancelContext(self._client, self._recorder, self._hub, self._nudge)
        return await cancel_run(context, run, reason, bearer)

    def _nudge(self, run_id: str) -> None:
        entry = self._observers.get(run_id)
        if entry is not None:
            entry[0].notify()

    def metrics_registry(self) -> prometheus_client.CollectorRegistry | None:
        return self._metrics.registry

    # ------------------------------------------------------------------ for tests and operators
    @property
    def discovery_passes(self) -> int:
        """How many ListSessions reconciliations discovery has completed."""
        return 0 if self._discovery is None else self._discovery.reconciliations

    def observing(self, run_id: str) -> bool:
        return run_id in self._observers


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p:{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        position = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor this console issued") from None
    if kind != "p" or position < 1:
        raise ValueError("not a cursor this console issued")
    return position
