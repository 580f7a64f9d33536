"""Where results go besides files and Kafka topics: Redis live state (`redis`)."""
