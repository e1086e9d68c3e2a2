"""The ``pymacp`` command line."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pymacp")
def main() -> None:
    """pymacp: a MACP (Multi-Agent Coordination Protocol) runtime.

    Today this release ships the protocol kernel (``pymacp.kernel``): the pure,
    deterministic session engine that decides every envelope. The gRPC runtime, the
    observer console and the agent bus are built on it next.
    """


@main.command()
def serve() -> None:
    """Start the MACP runtime (not available yet in this release).

    The gRPC server is the next milestone. Until it lands this command only explains
    that and exits with status 2, so scripts cannot mistake it for a running runtime.
    """
    click.echo(
        f"pymacp {__version__}: the MACP gRPC runtime is not implemented yet in this release.\n"
        "The protocol kernel is available as the Python package pymacp.kernel "
        "(see README.md, 'Using the kernel').",
        err=True,
    )
    sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
