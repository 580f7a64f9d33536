"""Kafka topic administration for the distributed runtime."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create each missing topic with the given partition count and wait until it is usable.

    Idempotent: topics that already exist are left as they are (whatever their partition
    count). ``configs`` gives topic-level settings per topic name, applied at creation
    only. Returns once every topic has a leader for each partition; raises
    ``KafkaException`` on a creation error and ``TimeoutError`` past ``timeout`` seconds.
    """
    for name, partitions in topics.items():
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be >= 1, got {partitions}")
    if not topics:
        return
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                 config=(configs or {}).get(name, {}))
        for name, partitions in topics.items()
        if name not in existing
    ]
    if missing:
        futures = admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout)
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _wait_for_leaders(admin, list(topics), deadline)


def _wait_for_leaders(admin: AdminClient, names: list[str], deadline: float) -> None:
    """Poll metadata until every partition of every topic in ``names`` has a leader."""
    pending = set(names)
    while True:
        metadata = admin.list_topics(timeout=max(0.5, deadline - time.monotonic()))
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not ready before timeout: {sorted(pending)}")
        time.sleep(0.1)
