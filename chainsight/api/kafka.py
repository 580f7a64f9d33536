"""The API's backend over the distributed runtime (`chainsight serve --kafka`).

Reads come from the workers' live state in Redis (`chainsight.outputs.redis`), deltas from its
`changes` pub/sub channel (one listener thread per process hands them to the subscribers).
Writes go to Kafka through one idempotent producer (`acks=all`), and are answered once the
broker has acknowledged them:

- events are validated with the engine's decoder (same rejection reasons), then produced to the
  events topic keyed as the producer path keys them (`publish.Router`). Duplicates are found by
  the engine that owns the event's partition, after the answer: `duplicates` is always 0 here,
  and `chainsight_duplicates_total` on /metrics counts them (see docs/distributed.md);
- a lifecycle command goes in band to the partition owning its alert (`publish.send_command`);
  the owning worker writes the outcome under the command's partition and offset
  (`command:<p>:<o>`), which is awaited to answer with the alert's new record, or the engine's
  refusal;
- a fence set goes to the fences topic and every partition (`publish.send_fences`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import ParamSpec, TypeVar

import orjson
import redis
from confluent_kafka import KafkaError, KafkaException, Message
from redis.exceptions import RedisError

from chainsight.api.backend import (
    Customers,
    Delta,
    Ingested,
    NotApplied,
    Recorded,
    Subscriber,
    T,
    Unavailable,
)
from chainsight.config import Profile, Settings
from chainsight.contract.commands import (
    Acknowledge,
    CommandRefused,
    ReplaceFences,
    Resolve,
    UnknownAlert,
    decode_command,
)
from chainsight.contract.events import EventDecoder
from chainsight.contract.times import iso, now_ms
from chainsight.eta.accuracy import Accuracy
from chainsight.outputs.redis import Keys
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.producer import EventProducer
from chainsight.runtimes.kafka.publish import (
    FENCES_KEY,
    KafkaSink,
    Router,
    send_command,
    send_fences,
)
from chainsight.runtimes.kafka.snapshots import PartitionReader
from chainsight.trace.chain import GENESIS

log = logging.getLogger("chainsight.api")
EMPTY = {"type": "FeatureCollection", "features": []}
P = ParamSpec("P")
R = TypeVar("R")


def reached(method: Callable[P, R]) -> Callable[P, R]:
    """Redis and Kafka errors of `method` become `Unavailable`, with a one-line reason."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis unavailable: {exc}") from None
        except KafkaException as exc:
            raise Unavailable(f"Kafka unavailable: {exc.args[0]}") from None

    return call


class Deliveries:
    """A delivery callback that waits for `count` records to be acknowledged by the broker."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.error: KafkaError | None = None
        self.where: list[tuple[int, int]] = []  # (partition, offset) of each record
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count == 0:
            self._done.set()

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.error = err
            else:
                self.where.append((msg.partition(), msg.offset()))
            self.left -= 1
            if self.left <= 0:
                self._done.set()

    def wait(self, timeout: float) -> None:
        """Until every record is durable; Unavailable when one failed or time ran out."""
        if not self._done.wait(timeout):
            raise Unavailable(f"Kafka did not acknowledge the records within {timeout:.0f} s")
        if self.error is not None:
            raise Unavailable(f"Kafka refused the records: {self.error.str()}")


class KafkaBackend:
    """`Backend` over Kafka and Redis (see the module's docstring)."""

    def __init__(self, config: StreamsConfig, settings: Settings,
                 profiles: dict[str, Profile], fences: dict | None = None,
                 command_timeout_s: float = 10.0, ack_timeout_s: float = 30.0) -> None:
        """`settings` and `profiles`: those the workers run with."""
        self.config = config
        self.profiles = profiles
        self.keys = Keys(config.redis_prefix)
        self.initial_fences = fences or EMPTY
        self.command_timeout_s, self.ack_timeout_s = command_timeout_s, ack_timeout_s
        self.redis = redis.Redis.from_url(config.redis_url, socket_timeout=2.0,
                                          socket_connect_timeout=1.0)
        self.sink = KafkaSink(config, EventProducer(
            config.bootstrap, linger_ms=2, config={"acks": "all", "log_level": 3}))
        self.partitions = self.sink.producer.partitions(config.events_topic)
        self.router = Router(EventDecoder.for_settings(settings), lookup=self._links)
        self.reader = PartitionReader(config.bootstrap)
        self._send_lock = threading.Lock()  # keys follow the order records are sent in
        self._read_lock = threading.Lock()  # the reader's consumer, one call at a time
        self._dispatch_lock = threading.Lock()  # held while subscribers get a delta
        self._subscribers: list[Subscriber] = []
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=target, name=name, daemon=True)
                         for target, name in ((self._serve_deliveries, "kafka-deliveries"),
                                              (self._listen, "redis-changes"))]
        for thread in self._threads:
            thread.start()

    # --- reads --------------------------------------------------------------------------------

    @reached
    def shipments(self, names: Collection[str] | None = None) -> dict[str, dict]:
        pipe = self.redis.pipeline(transaction=False)
        if names is None:
            pipe.hgetall(self.keys.shipments)
            pipe.hgetall(self.keys.last_seen)
            views, seen = pipe.execute()
            views = {k.decode(): v for k, v in views.items()}
            seen = {k.decode(): v for k, v in seen.items()}
        else:
            names = list(names)
            if not names:
                return {}
            pipe.hmget(self.keys.shipments, names)
            pipe.hmget(self.keys.last_seen, names)
            found, times = pipe.execute()
            views = {n: v for n, v in zip(names, found, strict=True) if v is not None}
            seen = dict(zip(names, times, strict=True))
        return {name: _item(name, orjson.loads(view), seen.get(name))
                for name, view in views.items()}

    @reached
    def customers(self, names: Iterable[str]) -> dict[str, str | None]:
        names = list(set(names))
        if not names:
            return {}
        found = self.redis.hmget(self.keys.customers, names)
        return {n: None if c is None else c.decode() for n, c in zip(names, found, strict=True)}

    def _links(self, devices: list[str]) -> dict[str, str]:
        """The shipments the workers last saw these devices linked to by an order."""
        found = self.redis.hmget(self.keys.links, devices)
        return {d: s.decode() for d, s in zip(devices, found, strict=True) if s is not None}

    @reached
    def history(self, shipment_id: str) -> list[dict]:
        return [orjson.loads(e) for e in reversed(self.redis.lrange(
            self.keys.history(shipment_id), 0, -1))]

    @reached
    def alerts(self, state: str | None = None, kind: str | None = None,
               shipment_id: str | None = None, severity: str | None = None) -> list[dict]:
        found = [a for a in map(orjson.loads, self.redis.hvals(self.keys.alerts))
                 if (state is None or a["state"] == state) and (kind is None or a["kind"] == kind)
                 and (shipment_id is None or a.get("shipment_id") == shipment_id)
                 and (severity is None or a["severity"] == severity)]
        found.sort(key=lambda a: (a["at"], a["alert_id"]), reverse=True)
        return found

    @reached
    def alert(self, alert_id: str) -> dict | None:
        record = self.redis.hget(self.keys.alerts, alert_id)
        return None if record is None else orjson.loads(record)

    @reached
    def audit_trail(self, alert_id: str) -> list[dict]:
        """The settled entries the workers wrote, then the alert's current record while it is
        provisional (its latest transition or user action, not yet settled)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.keys.audit(alert_id), 0, -1)
        pipe.hget(self.keys.alerts, alert_id)
        entries, current = pipe.execute()
        trail = [orjson.loads(e) for e in entries]
        record = None if current is None else orjson.loads(current)
        if record is not None and record.get("provisional"):
            trail.append(record)
        return trail

    @reached
    def metrics(self) -> dict[str, float]:
        """The partitions' counters summed, and their ETA models' accuracy together (as each
        worker last wrote its progress)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(self.keys.partitions)
        pipe.hvals(self.keys.open_alerts)
        pipe.hlen(self.keys.shipments)
        progress, open_alerts, shipments = pipe.execute()
        out = {"events": 0, "rejected": 0, "duplicates": 0, "late_dropped": 0}
        accuracy = []
        for value in map(orjson.loads, progress):
            eta = value.get("eta") or {}
            if eta:
                accuracy.append(eta.pop("accuracy"))
            for name, n in (value["counters"] | eta).items():
                out[name] = out.get(name, 0) + n
        if accuracy:
            out.update(Accuracy.merged(accuracy).summary())
        for record in open_alerts:
            name = f"open_alerts.{orjson.loads(record)['kind']}"
            out[name] = out.get(name, 0) + 1
        out["shipments"] = shipments
        return out

    @reached
    def stream_time(self) -> int:
        progress = self.redis.hvals(self.keys.partitions)
        return max((orjson.loads(p).get("stream_time", 0) for p in progress), default=0)

    @reached
    def order_facts(self, shipment_id: str) -> dict | None:
        facts = self.redis.hget(self.keys.orders, shipment_id)
        return None if facts is None else orjson.loads(facts)

    @reached
    def recorded(self, shipment_id: str) -> Recorded | None:
        facts = self.order_facts(shipment_id)
        item = self.shipments([shipment_id]).get(shipment_id)
        if facts is None or item is None:
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.record_heads, shipment_id)
        pipe.lrange(self.keys.record(shipment_id), 0, -1)
        head, lines = pipe.execute()
        length, head = (0, GENESIS) if head is None else orjson.loads(head)
        return Recorded(facts, item, [orjson.loads(e) for e in lines[:length]], length, head)

    def anchor(self, shipment_id: str) -> dict | None:
        """No anchors on Kafka (yet): the records topic is the durable copy."""
        return None

    @reached
    def shipment_of_sscc(self, sscc: str) -> str | None:
        found = self.redis.hget(self.keys.ssccs, sscc)
        return None if found is None else found.decode()

    @reached
    def fences(self) -> dict:
        return self._latest_fences().geojson

    def _latest_fences(self) -> ReplaceFences:
        """The fence set last published to the fences topic, or the one started with."""
        with self._read_lock:
            records, _ = self.reader.read(self.config.fences_topic, 0)
        latest = [r.value for r in records if r.key == FENCES_KEY and r.value]
        command = decode_command(latest[-1]) if latest else None
        return command if isinstance(command, ReplaceFences) \
            else ReplaceFences(self.initial_fences, 0)

    # --- writes -------------------------------------------------------------------------------

    @reached
    def ingest(self, lines: list[bytes], objects: list[object | None]) -> Ingested:
        producer, topic = self.sink.producer, self.config.events_topic
        with self._send_lock:
            keys, dead = self.router.route(lines, now=now_ms())
            rejected = {d["line"]: d["reason"] for d in dead}
            accepted = [i for i in range(len(lines)) if i not in rejected]
            deliveries = Deliveries(len(accepted))
            for i in accepted:
                producer.send(topic, keys[i], lines[i], on_delivery=deliveries)
        deliveries.wait(self.ack_timeout_s)
        return Ingested(len(accepted), 0, rejected)

    @reached
    def apply(self, command: Acknowledge | Resolve) -> dict:
        record = self.alert(command.alert_id)
        if record is None:
            raise UnknownAlert(f"unknown alert id {command.alert_id!r}")
        deliveries = Deliveries(1)
        with self._send_lock:
            send_command(self.sink, command, record.get("shipment_id")
                         or record.get("device_id") or "", on_delivery=deliveries)
        deliveries.wait(self.ack_timeout_s)
        ((partition, offset),) = deliveries.where
        outcome = self._outcome(partition, offset)
        if "refused" in outcome:
            refusal = UnknownAlert if outcome["unknown"] else CommandRefused
            raise refusal(outcome["refused"])
        return outcome["alert"]

    def _outcome(self, partition: int, offset: int) -> dict:
        """What the worker made of the command at this offset, once it has applied it."""
        key = self.keys.command(partition, offset)
        deadline = time.monotonic() + self.command_timeout_s
        while (value := self.redis.get(key)) is None:
            if time.monotonic() > deadline:
                raise NotApplied(f"the command is stored (partition {partition}, offset "
                                 f"{offset}) but no worker applied it within "
                                 f"{self.command_timeout_s:.0f} s; it will be applied when one "
                                 "does")
            time.sleep(0.01)
        return orjson.loads(value)

    @reached
    def replace_fences(self, geojson: dict) -> int:
        version = max(now_ms(), self._latest_fences().version + 1)
        deliveries = Deliveries(1 + self.partitions)
        with self._send_lock:
            send_fences(self.sink, self.config.fences_topic, ReplaceFences(geojson, version),
                        on_delivery=deliveries)
        deliveries.wait(self.ack_timeout_s)
        return version

    def _serve_deliveries(self) -> None:
        while not self._closed.is_set():
            self.sink.producer.poll(0.1)

    # --- live ---------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def watch(self, names: Collection[str] | None,
              join: Callable[[dict[str, dict], Customers], T]) -> T:
        with self._dispatch_lock:  # a change published after the read is dispatched after
            return join(self.shipments(names), self.customers)

    def _listen(self) -> None:
        """Hand each message of the changes channel to the subscribers, resubscribing after
        a Redis failure."""
        backoff = 0.2
        while not self._closed.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.channel)
                backoff = 0.2
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("Redis changes channel: %s; resubscribing in %.1f s", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                pubsub.close()

    def _dispatch(self, data: bytes) -> None:
        items: dict[str, dict] = {}
        alerts, notifications = [], []
        for change in orjson.loads(data):
            kind = change["type"]
            if kind == "state":
                name = change["shipment_id"]
                items[name] = _item(name, change["state"], change.get("last_seen"))
            elif kind == "alert":
                alerts.append(change["alert"])
            elif kind == "notification":
                notifications.append(change["notification"])
        delta = Delta(alerts, notifications, bool(items), lambda: items, self.customers)
        with self._dispatch_lock:
            for subscriber in self._subscribers:
                try:
                    subscriber(delta)
                except Unavailable as exc:  # e.g. customers unreadable: this delta is lost
                    log.warning("live delta not delivered: %s", exc)
                except Exception:  # a subscriber's bug must not stop the live stream
                    log.exception("live delta not delivered")

    # --- operations ---------------------------------------------------------------------------

    def health(self) -> str | None:
        try:
            self.redis.ping()
        except (RedisError, OSError) as exc:
            return f"Redis unavailable: {exc}"
        try:
            self.sink.producer.partitions(self.config.events_topic, timeout=1.0)
        except (KafkaException, KeyError) as exc:
            return f"Kafka unavailable: {exc}"
        return None

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(5)
        self.sink.producer.flush(10)
        with self._read_lock:
            self.reader.close()
        self.redis.close()


def _item(name: str, view: dict, last_seen: bytes | int | None) -> dict:
    return {"shipment_id": name, **view,
            "last_seen": None if last_seen is None else iso(int(last_seen))}
