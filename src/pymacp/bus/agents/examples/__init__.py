"""Example workers for ``pymacp agents``: :mod:`.task_worker` (run with ``python -m``)."""
