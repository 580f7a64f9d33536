"""The producer path: devices, simulators and recorded files into the events topic.

Each event is one message, its raw JSON line as the value, keyed so that everything about one
shipment lands on one partition: the key is the event's `shipment_id`; for a device event without
one, the shipment that device was last linked to by an event this producer sent (an `order`'s
`device_ids`, or a device event carrying `shipment_id`); else the `device_id`. Lines that are not
routable JSON are still sent (without a key): the worker dead-letters them.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import orjson

from chainsight.contract.commands import Command, ReplaceFences
from chainsight.contract.events import Event, EventDecoder
from chainsight.geofence import FenceSet
from chainsight.runtimes.kafka import control
from chainsight.runtimes.kafka.admin import ensure_topics
from chainsight.runtimes.kafka.config import StreamsConfig
from chainsight.runtimes.kafka.producer import DeliveryCallback, EventProducer

FENCES_KEY = b"fences"


Links = Callable[[list[str]], dict[str, str]]  # device ids -> the shipments they are linked to


class Router:
    """Chooses each event's key and tracks the stream time of the valid events sent.
    `lookup`, when given, tells the links of devices this router has not seen linked."""

    def __init__(self, decoder: EventDecoder | None = None, lookup: Links | None = None) -> None:
        self.decoder = decoder or EventDecoder()
        self.lookup = lookup
        self.links: dict[str, str] = {}  # device -> shipment, the latest link wins
        self.device_newest: dict[str, int] = {}
        self.business_newest: int | None = None

    def stream_time(self) -> int | None:
        """The stream time of what was sent, as the engine defines it (`Reorder.stream_time`:
        the newest time two devices have reached), None before any valid event."""
        times = sorted(self.device_newest.values())[-2:]
        return times[0] if times else self.business_newest

    def keys(self, lines: list[bytes]) -> list[bytes | None]:
        """The key of each line (None for lines the engine will reject)."""
        return self.route(lines)[0]

    def route(self, lines: list[bytes], now: int | None = None,
              ) -> tuple[list[bytes | None], list[dict]]:
        """`keys`, and the decoder's dead letters (`line`: 0-based index in `lines`)."""
        events, dead = self.decoder.decode_many(lines, first_line=0, now=now)
        rejected = {d["line"] for d in dead}
        looked_up = {}
        if self.lookup is not None:  # asked each time: another producer may relink a device
            unknown = {device for e in events if e.shipment_id is None
                       and (device := getattr(e, "device_id", None)) not in self.links}
            if unknown - {None}:
                looked_up = self.lookup(sorted(unknown - {None}))
        valid = iter(events)
        keys: list[bytes | None] = []
        for i in range(len(lines)):
            keys.append(None if i in rejected else self._key(next(valid), looked_up))
        newest = self.device_newest
        for event in events:
            device = getattr(event, "device_id", None)
            if device is None:
                self.business_newest = max(self.business_newest or event.ts, event.ts)
            elif event.ts > newest.get(device, event.ts - 1):
                newest[device] = event.ts
        return keys, dead

    def _key(self, event: Event, looked_up: dict[str, str]) -> bytes:
        shipment = event.shipment_id
        device = getattr(event, "device_id", None)
        if shipment is None:
            shipment = self.links.get(device) or looked_up.get(device, device)
        else:
            for linked in getattr(event, "device_ids", None) or ():
                self.links[linked] = shipment
            if device is not None:
                self.links[device] = shipment
        return shipment.encode()


class KafkaSink:
    """A simulator `Sink` (and general producer) writing events to the events topic.

    `write` takes a block of newline-separated JSON lines, or a list of lines (bytes or str),
    or a list of event dicts. `end_of_stream` marks the end of a recorded stream (see
    control.py); `close` waits for every message to be delivered.
    """

    wants = "bytes"

    def __init__(self, config: StreamsConfig, producer: EventProducer | None = None) -> None:
        self.topic = config.events_topic
        # Create the topics first: auto-created ones would get the broker's partition count.
        ensure_topics(config.bootstrap, config.topics(),
                      replication_factor=config.replication_factor,
                      configs=config.topic_configs())
        self.producer = producer or EventProducer(config.bootstrap, linger_ms=20)
        self.router = Router()
        self.sent = 0

    def write(self, batch: bytes | list[bytes] | list[str] | list[dict[str, Any]]) -> None:
        if isinstance(batch, bytes | bytearray | memoryview):
            lines = bytes(batch).splitlines()
        elif batch and isinstance(batch[0], dict):
            lines = [orjson.dumps(event) for event in batch]
        else:
            lines = [line.encode() if isinstance(line, str) else line for line in batch]
        lines = [line for line in lines if line.strip()]
        send = self.producer.send
        for key, line in zip(self.router.keys(lines), lines, strict=True):
            send(self.topic, key, line)
        self.sent += len(lines)

    def end_of_stream(self) -> None:
        """Tell every partition the recorded stream ended, and at what stream time."""
        clock = self.router.stream_time()
        if clock is None:
            return
        headers, value = control.flush(clock)
        for partition in range(self.producer.partitions(self.topic)):
            self.producer.send(self.topic, None, value, partition=partition, headers=headers)

    def close(self) -> None:
        pending = self.producer.flush(60.0)
        if pending or self.producer.errors:
            raise RuntimeError(f"{pending} events undelivered, {self.producer.errors} failed: "
                               f"{self.producer.last_error}")


def publish_file(path: Path, config: StreamsConfig, end_of_stream: bool = True) -> int:
    """Send a JSON Lines file in order (a recording: ends with an end-of-stream marker);
    returns the number of events sent."""
    sink = KafkaSink(config)
    with open(path, "rb") as source:
        while chunk := list(islice(source, 10_000)):
            sink.write([line.rstrip(b"\r\n") for line in chunk])
    if end_of_stream:
        sink.end_of_stream()
    sink.close()
    return sink.sent


def send_command(sink: KafkaSink, command: Command, key: str,
                 on_delivery: DeliveryCallback | None = None) -> None:
    """Send a user command in band, keyed like its shipment's events (`key`: the shipment id,
    or the device id for a device's own alert), so it reaches the partition that owns it."""
    headers, value = control.command(command)
    sink.producer.send(sink.topic, key.encode(), value, headers=headers,
                       on_delivery=on_delivery)


def publish_fences(config: StreamsConfig, geojson: dict, version: int) -> None:
    """Replace the fences of the whole deployment: the set goes to the compacted fences topic
    (what new engines start with) and, as a command, into every input partition (where each
    engine applies it in order with the events, so reprocessing gives the same results)."""
    FenceSet.from_geojson(geojson)  # refuse an invalid set before anything is written
    sink = KafkaSink(config)
    send_fences(sink, config.fences_topic, ReplaceFences(geojson, version))
    sink.close()


def send_fences(sink: KafkaSink, fences_topic: str, command: ReplaceFences,
                on_delivery: DeliveryCallback | None = None) -> int:
    """Queue a fence set's records (see `publish_fences`); returns how many."""
    send = sink.producer.send
    send(fences_topic, FENCES_KEY, msgspec.json.encode(command), partition=0,
         on_delivery=on_delivery)
    headers, value = control.command(command)
    partitions = sink.producer.partitions(sink.topic)
    for partition in range(partitions):
        send(sink.topic, None, value, partition=partition, headers=headers,
             on_delivery=on_delivery)
    return 1 + partitions
