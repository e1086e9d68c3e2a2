"""One real runtime, one real ``pymacp agents`` process and one callback receiver for these tests.

They are shared by the whole directory to keep it quick; tests isolate themselves by using
their own tasks and sessions, and the pools that break things (``crashy``, ``dead``) are
used by one test each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents_support import (
    API_KEY,
    RUNTIME_ENV,
    SECRET,
    TOKEN_ENV,
    AgentsProcess,
    CallbackReceiver,
    Stack,
    service_config,
)

from runtime_process import running_runtime


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("agents")
    with running_runtime(directory / "data", env=RUNTIME_ENV) as runtime, CallbackReceiver() as receiver:
        agents = AgentsProcess(directory, service_config(), runtime.target)
        agents.start()
        try:
            yield Stack(runtime.target, agents, receiver)
        finally:
            code = agents.stop()
            assert code == 0, f"pymacp agents exited with {code}:\n{agents.log()}"
            log = agents.log()
            for secret in (API_KEY, SECRET, "receiver-bearer-token", *TOKEN_ENV.values()):
                assert secret not in log, "a secret reached the log"
