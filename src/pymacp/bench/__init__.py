"""``pymacp bench``: benchmarks of the runtime, each a ratio against a baseline from the same run.

The suite is a client tool at the top of the stack. It starts ``pymacp serve`` as a real
process, drives it over loopback gRPC from separate client processes, and measures a
baseline that does the same with (almost) no work in the same run, so every figure is a
ratio that travels between machines better than a raw number. Modules:

- :mod:`.cli` -- the click command; :mod:`.runner` -- sizes, run context, scenario list;
- :mod:`.processes` -- runtime and baseline server processes, readiness, RSS, metrics;
- :mod:`.baseline` -- the no-op unary, fan-out and replay servers; :mod:`.readrows` -- the
  recovery baseline;
- :mod:`.workload` -- the Task-mode envelopes; :mod:`.load` and :mod:`.streams` -- client
  processes; :mod:`.fixtures` -- large histories written straight into SQLite;
- :mod:`.scenario_unary` (1, 2, 3, 8), :mod:`.scenario_streams` (4, 5),
  :mod:`.scenario_state` (6, 7); :mod:`.machine` -- machine facts and the fsync unit;
  :mod:`.report` -- the table and the JSON.

It imports the kernel and storage only to build fixtures; otherwise it speaks to the
runtime over gRPC alone.
"""
