"""The distributed runtime: Kafka consumer-group workers, one engine per input partition."""
