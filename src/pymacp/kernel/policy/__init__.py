"""Governance policies (RFC-MACP-0012): descriptors, typed rules, validation, evaluation."""
