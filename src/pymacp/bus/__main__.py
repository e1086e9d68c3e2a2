"""``python -m pymacp.bus``: the bus without the rest of the ``pymacp`` command line.

It starts faster than ``pymacp bus`` (no other subcommand is imported), which matters to the
stdiobus SDK: it reports a config error only if the bus exits within 0.5 s of its start.
"""

from .cli import bus

bus(prog_name="pymacp bus")
