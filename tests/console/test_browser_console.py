"""The web UI in headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
console observing a real runtime, while SDK agents work.

Each test keeps the page open while agents send envelopes and waits for the page itself to
show them: rows in the live run list, items in a run's timeline, the tally, the
commitment. Screenshots are saved to ``test-artifacts/screenshots/`` at the repository root.

Without ``/usr/bin/chromium`` these tests skip, unless ``PYMACP_REQUIRE_BROWSER=1`` (CI),
where a missing browser is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_e2e_support import Api, Decision, Task, console_env, started_console, started_runtime
from web_support import API_KEY, ConsoleProcess

from runtime_process import RuntimeProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
UI_TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("PYMACP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and PYMACP_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(f"{reason}: install Debian's chromium (apt-get install chromium) to run the browser tests")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with started_runtime(tmp_path_factory.mktemp("browser") / "runtime") as process:
        yield process


@pytest.fixture(scope="module")
def console(runtime: RuntimeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    with started_console(tmp_path_factory.mktemp("browser-console"), runtime) as process:
        yield process


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def with_key(page: Any) -> Any:
    """Skip the key dialog (tested on its own) by seeding this tab's sessionStorage."""
    page.add_init_script(f"sessionStorage.setItem('pymacp-console-api-key', {API_KEY!r})")
    return page


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def timeline_seqs(page: Any) -> list[int]:
    return [
        int(seq)
        for seq in page.locator("[data-testid=timeline-item]").evaluate_all(
            "els => els.map(e => e.dataset.seq)"
        )
    ]


def wait_timeline(page: Any, count: int) -> None:
    # Locators, not wait_for_function: the UI's CSP forbids eval, which that would need.
    page.locator("[data-testid=timeline-item]").nth(count - 1).wait_for()


def live_state(page: Any, state: str) -> None:
    page.locator(f"[data-testid=live-indicator][data-state={state}]").wait_for()


def test_the_key_dialog_and_the_live_run_list(
    page: Any, console: ConsoleProcess, runtime: RuntimeProcess
) -> None:
    page.goto(f"{console.url}/")
    page.locator("[data-testid=key-input]").fill("not-the-right-key-at-all")
    page.locator("[data-testid=key-submit]").click()
    page.get_by_text("That key was not accepted.").wait_for()
    page.locator("[data-testid=key-input]").fill(API_KEY)
    page.locator("[data-testid=key-submit]").click()
    live_state(page, "live")

    decision = Decision(runtime)
    try:
        decision.start()
        decision.propose()
        row = page.locator(f"[data-testid=run-row][data-session-id='{decision.session_id}']")
        row.wait_for()  # appeared without a reload: the list is live
        assert row.locator("[data-testid=status]").inner_text() in ("starting", "running")
        screenshot(page, "runs-list-live.png")

        decision.commit()
        row.locator("[data-testid=status]", has_text="completed").wait_for()
    finally:
        decision.close()
    screenshot(page, "runs-list-completed.png")


def test_a_run_page_follows_a_decision_as_it_happens(
    page: Any, console: ConsoleProcess, runtime: RuntimeProcess
) -> None:
    api = Api(console.url)
    session_id = str(uuid.uuid4())
    run_id = api.submit(session_id, ("lead", "alice", "bob"))["runId"]
    with_key(page).goto(f"{console.url}/#/runs/{run_id}")
    live_state(page, "live")
    page.locator("[data-testid=run-header] [data-testid=status]").wait_for()

    decision = Decision(runtime, session_id)
    try:
        decision.start()
        decision.propose()
        decision.evaluate("alice")
        wait_timeline(page, api.run(run_id)["lastSeq"])
        page.locator("[data-testid=proposal]", has_text="option p1").wait_for()
        before = len(timeline_seqs(page))
        screenshot(page, "run-decision-live.png")

        decision.vote("alice")
        decision.vote("bob")
        page.locator("[data-testid=tally]", has_text="approve 2").wait_for()
        assert len(timeline_seqs(page)) > before  # the timeline grew while the page stayed open
        decision.commit()
        page.locator("[data-testid=commitment]", has_text="decision.selected").wait_for()
        live_state(page, "ended")
    finally:
        decision.close()
        final = api.run(run_id)
        events = api.events(run_id)
        api.close()

    assert page.locator("[data-testid=run-header] [data-testid=status]").inner_text() == "completed"
    assert timeline_seqs(page) == [event["seq"] for event in events] == list(range(1, final["lastSeq"] + 1))
    assert page.locator("[data-testid=session-state]").inner_text() == "SESSION_STATE_RESOLVED"
    participants = page.locator("[data-testid=participants]").inner_text()
    assert all(name in participants for name in ("lead", "alice", "bob"))
    screenshot(page, "run-decision-completed.png")


def test_a_task_run_shows_its_progress(page: Any, console: ConsoleProcess, runtime: RuntimeProcess) -> None:
    api = Api(console.url)
    task = Task(runtime)
    try:
        task.steps[0]()  # SessionStart: discovery creates the run
        run = api.run_for_session(task.session.session_id)
        run = run or _wait_for_run(api, task.session.session_id)
        with_key(page).goto(f"{console.url}/#/runs/{run['runId']}")
        page.locator("[data-testid=timeline-item][data-type='session.started']").wait_for()
        for step in task.steps[1:4]:
            step()
        card = page.locator("[data-testid=task]")
        card.filter(has_text="halfway").wait_for()
        screenshot(page, "run-task-progress.png")
        for step in task.steps[4:]:
            step()
        card.filter(has_text="completed").wait_for()
        page.locator("[data-testid=commitment]", has_text="task.completed").wait_for()
    finally:
        task.close()
        api.close()
    assert page.locator("progress").first.evaluate("el => el.value") == 1
    screenshot(page, "run-task-completed.png")


def _wait_for_run(api: Api, session_id: str) -> dict[str, Any]:
    from web_support import wait_until

    found: dict[str, Any] = wait_until(lambda: api.run_for_session(session_id), what="discovery")
    return found


def test_payloads_are_shown_as_text_never_as_markup(
    page: Any, console: ConsoleProcess, runtime: RuntimeProcess
) -> None:
    hostile = '<img src="x" onerror="document.title=\'pwned\'"><b>bold</b>'
    api = Api(console.url)
    decision = Decision(runtime)
    try:
        decision.start()
        decision.propose("p1", option=hostile)
        run = _wait_for_run(api, decision.session_id)
        with_key(page).goto(f"{console.url}/#/runs/{run['runId']}")
        page.locator("[data-testid=proposal]", has_text=hostile).wait_for()
        page.locator("[data-testid=timeline-item][data-type='proposal.submitted']").click()
    finally:
        decision.close()
        api.close()

    assert page.locator("main img, main b").count() == 0
    assert page.title() == "pymacp console"
    assert hostile in page.locator("[data-testid=timeline]").inner_text()


def test_an_unknown_run_says_so(page: Any, console: ConsoleProcess) -> None:
    with_key(page).goto(f"{console.url}/#/runs/{uuid.uuid4()}")

    assert "no run with id" in page.locator("[data-testid=run-error]").inner_text()


def test_the_page_rides_out_a_console_restart(page: Any, runtime: RuntimeProcess, tmp_path: Path) -> None:
    workdir = tmp_path / "console"
    first = ConsoleProcess(workdir, env=console_env(runtime)).start()
    port = first.url.rsplit(":", 1)[1]
    decision = Decision(runtime)
    second: ConsoleProcess | None = None
    try:
        decision.start()
        decision.propose()
        api = Api(first.url)
        run = _wait_for_run(api, decision.session_id)
        api.close()
        with_key(page).goto(f"{first.url}/#/runs/{run['runId']}")
        page.locator("[data-testid=timeline-item][data-type='proposal.submitted']").wait_for()

        first.stop()
        live_state(page, "reconnecting")
        decision.vote("alice")  # while nobody observes
        second = ConsoleProcess(
            workdir, env={**console_env(runtime), "PYMACP_CONSOLE_BIND": f"127.0.0.1:{port}"}
        )
        second.start()
        decision.commit()
        page.locator("[data-testid=commitment]").wait_for(timeout=30_000)
        live_state(page, "ended")
        api = Api(second.url)
        events = api.events(run["runId"])
        api.close()
    finally:
        decision.close()
        if second is not None:
            second.stop()

    assert timeline_seqs(page) == [event["seq"] for event in events] == list(range(1, len(events) + 1))
    screenshot(page, "run-after-console-restart.png")
