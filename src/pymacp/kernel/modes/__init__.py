"""MACP modes: one module per mode, each a rule table plus its handlers (see base.py)."""
