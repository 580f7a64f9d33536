"""Kafka topic administration for the distributed runtime, and retrying transient errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger("chainsight.worker")
T = TypeVar("T")
BACKOFF_S = (0.2, 5.0)  # first delay, cap
# Errors a broker gives while it is still settling (new topics, leader moves, restarts): librdkafka
# does not flag most of them retriable(), but they all pass.
TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
})


def is_transient(exc: BaseException) -> bool:
    """True for a Kafka error worth retrying (and a timeout of our own waits on the broker)."""
    if isinstance(exc, TimeoutError):
        return True
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return (isinstance(error, KafkaError) and not error.fatal()
            and (error.retriable() or error.code() in TRANSIENT))


def describe(exc: BaseException) -> str:
    """A Kafka error (or any exception) in one line."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return f"{type(exc).__name__}: {exc}"


def retry_transient(action: Callable[[], T], what: str,
                    stopping: Callable[[], bool] = lambda: False) -> T:
    """`action()`, retried with backoff (0.2 s doubling to 5 s) while it fails with a transient
    error; other errors, and a transient one once `stopping()`, are raised."""
    delay = BACKOFF_S[0]
    while True:
        try:
            return action()
        except (KafkaException, TimeoutError) as exc:
            if not is_transient(exc) or stopping():
                raise
            log.warning("%s: %s; retrying in %.1f s", what, describe(exc), delay)
        time.sleep(delay)
        delay = min(delay * 2, BACKOFF_S[1])


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
