"""Capture: turn model calls into records (gateway, SDK wrappers, OpenTelemetry intake).

Sits above records and the ledger; nothing below imports it.
"""
