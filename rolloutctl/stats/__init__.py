"""The stats engine: pure functions on sufficient statistics (no I/O, no clock)."""
