"""pymacp console: an observer control plane for MACP runtimes (README: "The observer console")."""
