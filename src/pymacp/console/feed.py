"""Change feeds: a level-triggered "something changed" signal per run, and one for all runs.

A feed is a flag plus an event. Publishing sets the flag of every interested feed; ``wait``
returns at once if the flag is up (clearing it), so a change that lands between two waits
is never lost, and many changes between two waits cost one wake-up. Readers then re-read
the store, which stays the single source of truth (feeds carry no data).
"""

from __future__ import annotations

import asyncio


class ChangeFeed:
    def __init__(self, hub: FeedHub, run_id: str | None) -> None:
        self._hub = hub
        self._run_id = run_id
        self._changed = False
        self._event = asyncio.Event()
        self._closed = False

    def _mark(self) -> None:
        self._changed = True
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if something changed since the last wait (or since the feed was opened)."""
        if not self._changed and not self._closed:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return False
        changed = self._changed
        self._changed = False
        self._event.clear()
        return changed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._remove(self._run_id, self)
            self._event.set()  # release a waiter; it returns False

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeedHub:
    def __init__(self) -> None:
        self._feeds: dict[str | None, set[ChangeFeed]] = {}

    def open(self, run_id: str | None) -> ChangeFeed:
        feed = ChangeFeed(self, run_id)
        self._feeds.setdefault(run_id, set()).add(feed)
        return feed

    def publish(self, run_id: str) -> None:
        """Wake the feeds of ``run_id`` and the all-runs feeds."""
        for key in (run_id, None):
            for feed in self._feeds.get(key, ()):
                feed._mark()

    def close_all(self) -> None:
        for feeds in list(self._feeds.values()):
            for feed in list(feeds):
                feed.close()

    def _remove(self, run_id: str | None, feed: ChangeFeed) -> None:
        feeds = self._feeds.get(run_id)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self._feeds[run_id]

    def __len__(self) -> int:
        return sum(len(feeds) for feeds in self._feeds.values())
