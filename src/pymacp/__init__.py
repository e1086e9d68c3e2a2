"""pymacp: a MACP runtime, observer console and agent bus."""

__version__ = "0.1.0"
