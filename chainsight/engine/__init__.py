"""The engine: batches of raw events and user commands in, transitions, dead letters and state
changes out (`core.Engine`), over per-entity columnar state (`state`)."""
