"""MQTT ingest: contract events from devices that publish to an MQTT broker.

Topics (`+` is one level; `chainsight` is the default topic root, `--mqtt-topic-root`):

- `chainsight/devices/{device_id}/events`: one device's own events. Each event's `device_id` (a
  scan's `reader_id`: the reader is the device) must be the topic's; orders are refused there.
- `chainsight/systems/{name}/events`: business systems (ERP, WMS, gateways): any event.

A payload is one JSON object, or a JSON array of them (a device's buffered burst). Anything that
is not an event goes to the dead-letter output with the MQTT `topic` and, for an element of an
array, its `index`; the decoder's reasons are the contract's.

Delivery is QoS 1 on a persistent session (a fixed client id, clean start off, a session
expiry), so the broker keeps what arrives while ChainSight is away. Messages are taken in
batches and acknowledged (PUBACK, in the order received) only once `write` has made their
events durable and their dead letters are written: a kill loses nothing, and what is delivered
again is absorbed by the engine's `event_id` dedup. The client's Receive Maximum (MQTT 5) lets
the broker send that many messages ahead of the acknowledgements. A batch is taken every
`linger_s` (sooner once `max_batch` messages wait): the engine's cost per call, and the store's
fsync, are shared by the batch.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("chainsight.mqtt")

ROOT = "chainsight"
PASSWORD_ENV = "CHAINSIGHT_MQTT_PASSWORD"
DEAD_PAYLOAD_MAX = 65536  # characters of a payload kept in its dead letter
SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps the session while we are away

Write = Callable[[list[bytes]], list[tuple[int, str]]]  # lines -> (index, reason) rejected
WriteDead = Callable[[list[dict]], None]


def device_topic(device_id: str, root: str = ROOT) -> str:
    return f"{root}/devices/{device_id}/events"


def system_topic(name: str, root: str = ROOT) -> str:
    return f"{root}/systems/{name}/events"


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in: `mqtt://[user[:password]@]host[:port]` (port
    1883) or `mqtts://...` (TLS, port 8883). The password may come from
    CHAINSIGHT_MQTT_PASSWORD instead of the URL. TLS files: a CA bundle (default: the system's)
    and a client certificate and key."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def parse(cls, url: str, ca_file: str | None = None, cert_file: str | None = None,
              key_file: str | None = None) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT URL {url!r}: expected mqtt://[user[:password]@]host[:port] "
                             "or mqtts://...")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"MQTT URL {url!r}: bad port") from None
        tls = parts.scheme == "mqtts" or any((ca_file, cert_file, key_file))
        if bool(cert_file) != bool(key_file):
            raise ValueError("--mqtt-cert and --mqtt-key go together")
        password = os.environ.get(PASSWORD_ENV) or (
            unquote(parts.password) if parts.password else None)
        return cls(parts.hostname, port or (8883 if tls else 1883), tls,
                   unquote(parts.username) if parts.username else None, password,
                   ca_file, cert_file, key_file)

    def client(self, client_id: str, manual_ack: bool = False) -> mqtt.Client:
        """A paho client (MQTT 5) set up for this broker, not yet connected."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, manual_ack=manual_ack)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file,
                           keyfile=self.key_file, cert_reqs=ssl.CERT_REQUIRED)
        return client

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def connect(client: mqtt.Client, broker: Broker, properties: Properties | None = None,
            clean_start: bool = True, timeout_s: float = 10.0) -> None:
    """Connect, start the client's network thread and wait for the broker's answer; raises
    ValueError with a one-line reason when the broker cannot be reached or refuses. The
    client's own `on_connect`, if any, still runs on every connection."""
    answered = threading.Event()
    refusal: list[str] = []
    handler = client.on_connect

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not answered.is_set():
            if reason.is_failure:
                refusal.append(str(reason))
            answered.set()
        if handler is not None:
            handler(c, userdata, flags, reason, props)

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=30, clean_start=clean_start,
                       properties=properties)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot connect to the MQTT broker {broker}: {exc}") from None
    client.loop_start()
    if not answered.wait(timeout_s) or refusal:
        client.loop_stop()
        why = refusal[0] if refusal else f"no answer within {timeout_s:g} s"
        raise ValueError(f"the MQTT broker {broker} refused the connection: {why}")


def forget_session(broker: Broker, client_id: str) -> None:
    """Remove a client id's persistent session from the broker, with what it holds."""
    client = broker.client(client_id)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    connect(client, broker, properties, clean_start=True)
    client.disconnect()
    client.loop_stop()


# --- payloads to lines ---------------------------------------------------------------------------

class Message(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int


class _Sender(msgspec.Struct):
    """The members of an event that say who sent it (other members are skipped)."""

    type: Any = None
    device_id: Any = None
    reader_id: Any = None


_sender = msgspec.json.Decoder(_Sender).decode
_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode


@dataclass
class Unpacked:
    """A batch of messages as the engine's lines, where each came from, and the dead letters
    found before the engine sees anything."""

    lines: list[bytes] = field(default_factory=list)
    origins: list[tuple[str, int | None]] = field(default_factory=list)  # topic, array index
    dead: list[dict] = field(default_factory=list)

    def add(self, topic: str, payload: bytes) -> None:
        """One message: its events, or why it has none."""
        device = _topic_device(topic)
        body = payload.strip(b" \t\r\n")
        if not body:
            self.dead.append(dead_letter("empty message", payload, topic))
        elif body[:1] == b"[":
            try:
                elements = _elements(body)
            except msgspec.DecodeError as exc:
                self.dead.append(dead_letter(f"malformed JSON: {exc}", payload, topic))
                return
            for i, element in enumerate(elements):
                self._event(bytes(element), topic, i, device)
        else:
            self._event(body, topic, None, device)

    def _event(self, line: bytes, topic: str, index: int | None, device: str | None) -> None:
        reason = None if device is None else _device_refusal(line, device)
        if reason is not None:
            self.dead.append(dead_letter(reason, line, topic, index))
            return
        self.lines.append(line)
        self.origins.append((topic, index))

    def rejected(self, index: int, reason: str) -> None:
        """The engine (or decoder) rejected line `index` of this batch."""
        topic, at = self.origins[index]
        self.dead.append(dead_letter(reason, self.lines[index], topic, at))


def topic_of(line: bytes, system: str, root: str = ROOT) -> str:
    """The topic a publisher sends this event on: its device's (a scan's reader's), else the
    system `system`'s (orders, and lines that are no event)."""
    try:
        sender = _sender(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return system_topic(system, root)
    device = sender.reader_id if sender.type == "scan" else sender.device_id
    if sender.type == "order" or not isinstance(device, str) or not device:
        return system_topic(system, root)
    return device_topic(device, root)


def _topic_device(topic: str) -> str | None:
    """The device a device topic names; None for other topics."""
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "devices" else None


def _device_refusal(line: bytes, device: str) -> str | None:
    """Why an event may not come from this device's topic; None when it may (or when it is
    malformed: the decoder says why)."""
    try:
        sender = _sender(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    kind = sender.type
    if kind == "order":
        return (f"an order comes from a business system (a systems/NAME/events topic), not "
                f"from device {device}'s topic")
    if kind == "scan":
        if sender.reader_id != device:
            return f"scan by reader {sender.reader_id} sent on device {device}'s topic"
    elif isinstance(sender.device_id, str) and sender.device_id != device:
        return f"device_id {sender.device_id} does not match the topic's device {device}"
    return None


def dead_letter(reason: str, payload: bytes, topic: str, index: int | None = None) -> dict:
    """A dead letter as the contract writes them, with the MQTT topic (and array index)."""
    text = payload.decode("utf-8", errors="replace")
    if len(text) > DEAD_PAYLOAD_MAX:
        text = text[:DEAD_PAYLOAD_MAX]
        reason = f"{reason} (payload cut to {DEAD_PAYLOAD_MAX} characters)"
    return {"reason": " ".join(reason.splitlines()), "payload": text, "topic": topic,
            "index": index}


# --- the subscriber ------------------------------------------------------------------------------

@dataclass
class Stats:
    messages: int = 0
    events: int = 0
    dead_letters: int = 0


class MqttIngest:
    """Subscribes to the device and system topics and hands their events to `write` in batches
    (on its own thread); `write_dead` gets the dead letters. Both must be durable when they
    return: the messages are acknowledged then. An exception from either stops the ingest
    without acknowledging the batch (`failure` holds it)."""

    def __init__(self, broker: Broker, client_id: str, write: Write, write_dead: WriteDead, *,
                 root: str = ROOT, receive_maximum: int = 10_000, max_batch: int = 5000,
                 linger_s: float = 0.05) -> None:
        self.broker, self.client_id = broker, client_id
        self.topics = (device_topic("+", root), system_topic("+", root))
        self.write, self.write_dead = write, write_dead
        self.receive_maximum, self.max_batch, self.linger_s = (
            receive_maximum, max_batch, linger_s)
        self.stats = Stats()
        self.failure: BaseException | None = None
        self._pending: list[Message] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = broker.client(client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> MqttIngest:
        """Connect (ValueError with the reason if that fails) and start taking messages."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self.receive_maximum
        connect(self.client, self.broker, properties, clean_start=False)
        self._thread = threading.Thread(target=self._run, name="chainsight-mqtt", daemon=True)
        self._thread.start()
        log.info("MQTT ingest %s on %s: %s", self.client_id, self.broker, ", ".join(self.topics))
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def problem(self) -> str | None:
        """Why the ingest is not taking messages now (stopped, or away from the broker);
        None while it is."""
        if self.failure is not None:
            return f"MQTT ingest stopped: {type(self.failure).__name__}: {self.failure}"
        if not self.running:
            return "MQTT ingest is not running"
        if not self.client.is_connected():
            return f"MQTT ingest is not connected to {self.broker} (reconnecting)"
        return None

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it and disconnect (the session stays on the
        broker, holding what arrives until the next start)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any,
                    _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.broker, reason)
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        if flags is not None and not flags.session_present:
            log.info("MQTT: new session %s on %s", self.client_id, self.broker)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._stopping.is_set():
            log.warning("MQTT: disconnected from %s (%s); reconnecting", self.broker, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        item = Message(message.topic, message.payload, message.mid, message.qos)
        with self._lock:
            self._pending.append(item)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                with self._lock:
                    batch, self._pending = self._pending, []
                if batch:
                    self._handle(batch)
                rest = self.linger_s - (time.monotonic() - started)
                if rest > 0 and len(self._pending) < self.max_batch:
                    self._stopping.wait(rest)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller; nothing acknowledged
            self.failure = exc
            log.error("MQTT ingest stopped: %s: %s", type(exc).__name__, exc)

    def _handle(self, batch: list[Message]) -> None:
        unpacked = Unpacked()
        for message in batch:
            unpacked.add(message.topic, message.payload)
        if unpacked.lines:
            for index, reason in self.write(unpacked.lines):
                unpacked.rejected(index, reason)
        if unpacked.dead:
            self.write_dead(unpacked.dead)
        ack = self.client.ack
        for message in batch:
            if message.qos:
                ack(message.mid, message.qos)
        self.stats.messages += len(batch)
        self.stats.events += len(unpacked.lines)
        self.stats.dead_letters += len(unpacked.dead)

