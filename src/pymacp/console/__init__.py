"""pymacp console: an observer control plane for MACP runtimes (see docs/console.md)."""
