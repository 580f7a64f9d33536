"""Traceability: tamper-evident records, anchoring, customer links, carbon and EPCIS."""
