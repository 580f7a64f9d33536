"""Ingest: raw lines to deduplicated columnar rows (`dedup`), then event-time order (`reorder`)."""
