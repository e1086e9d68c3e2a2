"""``pymacp agents``: worker pools as MACP participants (the bridge), and task dispatch over HTTP.

Built on the bus's :class:`~pymacp.bus.pool.Pool`; it talks to the runtime only over MACP's
public gRPC API. Modules, bottom up:

- :mod:`.config` -- the config file: pools, participants, tokens, caps, callbacks;
- :mod:`.client` -- a runtime client for one identity (adds ``Send`` to the console's client);
- :mod:`.watch` -- the one WatchSessions stream; :mod:`.feed` -- following one session;
- :mod:`.methods` -- the JSON-RPC methods between the bridge and its workers;
- :mod:`.bridge` -- a pool acting as one participant;
- :mod:`.tasks` -- a task's lifecycle and events; :mod:`.capacity` -- per-pool cap and queue;
- :mod:`.run` -- one task's ``macp.mode.task.v1`` session; :mod:`.dispatch` -- the dispatcher;
- :mod:`.callbacks` -- signed completion callbacks with retries;
- :mod:`.submission`, :mod:`.api`, :mod:`.server` -- the HTTP API;
- :mod:`.service` -- everything wired together; :mod:`.cli` -- the command;
- :mod:`.examples.task_worker` -- a small worker that does tasks (for docs and tests).
"""
