"""Example workers for ``pymacp bus``: :mod:`.echo_worker` (run with ``python -m``)."""
