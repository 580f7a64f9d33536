"""The local Kafka broker and Redis server work end to end with ChainSight's clients."""

from __future__ import annotations

import time
from collections import defaultdict

import redis
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.producer import EventProducer


def _produce(bootstrap: str, topic: str, n: int, keys: int) -> list[tuple[bytes, bytes]]:
    """Send n messages over `keys` distinct keys; return (key, value) in send order."""
    sent = [(f"dev-{i % keys}".encode(), f"event-{i}".encode()) for i in range(n)]
    with EventProducer(bootstrap) as producer:
        for key, value in sent:
            producer.send(topic, key, value)
        assert producer.flush(30.0) == 0
    assert producer.errors == 0, producer.last_error
    assert producer.delivered == n
    return sent


def test_ensure_topics_creates_partitions_and_is_idempotent(kafka_bootstrap, topic_prefix):
    topics = {f"{topic_prefix}.a": 3, f"{topic_prefix}.b": 1}
    ensure_topics(kafka_bootstrap, topics)
    ensure_topics(kafka_bootstrap, topics)
    # An existing topic is left alone even if asked for another partition count.
    ensure_topics(kafka_bootstrap, {f"{topic_prefix}.a": 8})
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    for name, partitions in topics.items():
        assert len(metadata.topics[name].partitions) == partitions


def test_produce_and_consume_all_messages(kafka_bootstrap, topic_prefix):
    topic, n, partitions = f"{topic_prefix}.events", 2000, 6
    ensure_topics(kafka_bootstrap, {topic: partitions})
    sent = _produce(kafka_bootstrap, topic, n, keys=37)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{topic_prefix}.group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + 60
    try:
        while len(received) < n and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                assert msg.error() is None, msg.error()
                received.append((msg.key(), msg.value(), msg.partition()))
    finally:
        consumer.close()

    assert len(received) == n
    assert sorted((k, v) for k, v, _ in received) == sorted(sent)
    # Keys spread over several partitions, and each key keeps its send order.
    assert len({p for _, _, p in received}) > 1
    by_key_sent: dict[bytes, list[bytes]] = defaultdict(list)
    by_key_received: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in sent:
        by_key_sent[key].append(value)
    for key, value, _ in received:
        by_key_received[key].append(value)
    assert by_key_received == by_key_sent


def test_producer_counts_delivery_errors(kafka_bootstrap, topic_prefix):
    # The broker rejects records over this topic's max.message.bytes: a delivery error.
    topic = f"{topic_prefix}.small"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": "1024"}
    )
    admin.create_topics([new])[topic].result()
    ensure_topics(kafka_bootstrap, {topic: 1})

    producer = EventProducer(kafka_bootstrap, config={"linger.ms": 0})
    producer.send(topic, b"k", b"ok")
    assert producer.flush(30.0) == 0
    producer.send(topic, b"k", b"x" * 4096)
    assert producer.flush(30.0) == 0
    assert producer.delivered == 1
    assert producer.errors == 1
    assert producer.last_error is not None
    assert producer.last_error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_redis_round_trip_and_pubsub(redis_url, name_prefix):
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    key, channel = f"{name_prefix}:key", f"{name_prefix}:chan"
    try:
        assert client.set(key, b"reefer-42", ex=60)
        assert client.get(key) == b"reefer-42"

        pubsub = client.pubsub()
        pubsub.subscribe(channel)
        # Wait for the subscription to be confirmed before publishing.
        confirm = pubsub.get_message(timeout=5.0)
        assert confirm is not None and confirm["type"] == "subscribe"
        assert client.publish(channel, b"excursion") == 1
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        assert message is not None
        assert message["channel"] == channel.encode()
        assert message["data"] == b"excursion"
        pubsub.close()
    finally:
        client.delete(key)
        client.close()
