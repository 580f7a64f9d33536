"""`chainsight mqtt-bridge`: devices' MQTT messages into the distributed runtime's events topic.

Events go to the events topic one per message, keyed by shipment like every producer's
(`publish.Router`), through the idempotent producer; what the decoder rejects, and what the MQTT
ingest refuses, goes to the dead-letter topic with the MQTT topic as context. A batch of MQTT
messages is acknowledged only once Kafka has acknowledged all of it (`acks=all`), so a bridge
killed at any moment loses nothing: the broker delivers again what was not acknowledged, and
the workers' `event_id` dedup absorbs what had already reached Kafka.

The router's device→shipment links (which key a device event without `shipment_id` by its
shipment) are kept in Redis (`<prefix>device-links`), written before the batch is acknowledged,
so a restarted bridge keys such events as the one before it did.
"""

from __future__ import annotations

import logging
import signal
import threading

import orjson
import redis

from chainsight.ingest.mqtt import ROOT, Broker, MqttIngest
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.publish import Router

log = logging.getLogger("chainsight.mqtt_bridge")
DELIVERY_TIMEOUT_S = 60.0


class DeliveryFailed(RuntimeError):
    """Kafka did not take a batch: the bridge stops without acknowledging it."""


class Links(dict[str, str]):
    """Device → shipment links, loaded from a Redis hash; `save` writes the changed ones."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        super().__init__({k.decode(): v.decode() for k, v in client.hgetall(key).items()})
        self.client, self.key = client, key
        self.changed: dict[str, str] = {}

    def __setitem__(self, device: str, shipment: str) -> None:
        if self.get(device) != shipment:
            self.changed[device] = shipment
            super().__setitem__(device, shipment)

    def save(self) -> None:
        if self.changed:
            self.client.hset(self.key, mapping=self.changed)
            self.changed = {}


class KafkaEvents:
    """The bridge's writer: events to the events topic, dead letters to the dead-letter topic,
    each call returning once Kafka has everything."""

    def __init__(self, config: StreamsConfig, producer: EventProducer | None = None) -> None:
        self.router = Router()
        self.router.links = Links(redis.Redis.from_url(config.redis_url),
                                  f"{config.redis_prefix}device-links")
        ensure_topics(config.bootstrap, config.topics(),
                      replication_factor=config.replication_factor,
                      configs=config.topic_configs())
        self.events_topic, self.dead_topic = config.events_topic, config.dead_letter_topic
        self.producer = producer or EventProducer(config.bootstrap, linger_ms=2,
                                                  config={"log_level": 3})

    def write(self, lines: list[bytes]) -> list[tuple[int, str]]:
        keys, dead = self.router.route(lines)
        self.router.links.save()
        send, topic = self.producer.send, self.events_topic
        for key, line in zip(keys, lines, strict=True):
            if key is not None:
                send(topic, key, line)
        self._flush()
        return [(d["line"], d["reason"]) for d in dead]

    def write_dead(self, records: list[dict]) -> None:
        for record in records:
            self.producer.send(self.dead_topic, record["topic"].encode(), orjson.dumps(record))
        self._flush()

    def _flush(self) -> None:
        errors = self.producer.errors
        pending = self.producer.flush(DELIVERY_TIMEOUT_S)
        if pending or self.producer.errors != errors:
            raise DeliveryFailed(f"{pending} messages undelivered after {DELIVERY_TIMEOUT_S:g} s,"
                                 f" {self.producer.errors - errors} failed: "
                                 f"{self.producer.last_error}")


def run_bridge(config: StreamsConfig, broker: Broker, client_id: str, root: str = ROOT) -> int:
    """Bridge until SIGTERM/SIGINT (0) or a Kafka failure (1)."""
    kafka = KafkaEvents(config)
    ingest = MqttIngest(broker, client_id, kafka.write, kafka.write_dead, root=root).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("bridging %s to %s", broker, config.events_topic)
    while not stop.wait(1.0) and ingest.running:
        pass
    ingest.stop()
    s = ingest.stats
    log.info("bridged %d messages: %d events, %d dead letters", s.messages, s.events,
             s.dead_letters)
    return 1 if ingest.failure is not None else 0
