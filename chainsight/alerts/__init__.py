"""The alert lifecycle (`book`: ids, transitions, acknowledgements, escalation) and its
hash-chained audit trail (`audit`)."""
