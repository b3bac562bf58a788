"""The events a generation reports to its webhook, in the order they happen."""

EVENTS = ("queued", "started", "partial", "completed", "failed", "canceled")
