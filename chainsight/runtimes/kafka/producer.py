"""Idempotent, batching Kafka producer for ChainSight events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

from confluent_kafka import KafkaError, Message, Producer

ConfigValue = str | int | float | bool
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class EventProducer:
    """Thin typed wrapper over ``confluent_kafka.Producer`` that counts delivery outcomes.

    Idempotence is always on (no duplicates or reordering per partition on retry).
    Messages are batched for ``linger_ms``; ``flush`` or leaving the ``with`` block
    waits for outstanding deliveries (the latter raises ``TimeoutError`` if some remain).
    ``config`` adds or overrides librdkafka settings (idempotence stays on).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 5,
        batch_size: int = 256 * 1024,
        close_timeout: float = 30.0,
        config: Mapping[str, ConfigValue] | None = None,
    ) -> None:
        settings: dict[str, ConfigValue] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            **(config or {}),
            "enable.idempotence": True,
        }
        self._producer = Producer(settings)
        self._close_timeout = close_timeout
        self.delivered = 0
        self.errors = 0
        self.last_error: KafkaError | None = None

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors += 1
            self.last_error = err

    def _chained(self, then: DeliveryCallback) -> DeliveryCallback:
        def callback(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            then(err, msg)

        return callback

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout)

    def send(self, topic: str, key: bytes | None, value: bytes | None, *,
             partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
             on_delivery: DeliveryCallback | None = None) -> None:
        """Queue one message (to ``partition`` if given, else by key); blocks briefly (serving
        callbacks) while the local queue is full. ``on_delivery`` is called after the counting."""
        callback = self._on_delivery if on_delivery is None else self._chained(on_delivery)
        extra: dict = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=callback,
                                       **extra)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def partitions(self, topic: str, timeout: float = 10.0) -> int:
        """Number of partitions of ``topic`` (from broker metadata)."""
        topics = self._producer.list_topics(topic, timeout=timeout).topics
        if topic not in topics or topics[topic].error is not None:
            raise KeyError(f"topic {topic!r} not found")
        return len(topics[topic].partitions)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for deliveries; return how many are still pending."""
        return self._producer.flush(timeout)

    def __len__(self) -> int:
        """Messages queued or in flight."""
        return len(self._producer)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pending = self.flush(self._close_timeout)
        if pending and exc_type is None:
            raise TimeoutError(f"{pending} messages undelivered after {self._close_timeout}s")
