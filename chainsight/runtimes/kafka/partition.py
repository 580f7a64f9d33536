"""One input partition's processing: its own Engine, fed the partition's records in offset order.

A `Partition` turns a run of Kafka records into engine calls (events in batches, control records
one by one) and collects what the worker must write: alert transitions, dead letters, changed
shipments and raw events for history. After a restore it suppresses the alert transitions and
dead letters that the previous owner had already written past the snapshot, so that
reprocessing (deterministic: same records, same results) neither loses nor duplicates any.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np
import orjson

from chainsight.contract.commands import (
    CommandRefused,
    ReplaceFences,
    UnknownAlert,
    decode_command,
)
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.kafka import control
from chainsight.trace.record import Written


@dataclass
class PartitionState:
    """What a snapshot holds: the engine, the partition's open alerts (latest records) and the
    fence set published to the deployment that the engine runs with, if any."""

    engine: Engine
    open_alerts: dict[str, dict] = field(default_factory=dict)
    fences: ReplaceFences | None = None

    def replace_fences(self, command: ReplaceFences) -> Output:
        """Apply a published fence set unless it is older than the one in force (a partition
        read from its start meets the sets published before the one it started with)."""
        if self.fences is not None and command.version <= self.fences.version:
            return Output()
        out = self.engine.apply(command)
        self.fences = command
        return out

    def dump_state(self) -> dict:
        return {"engine": self.engine.dump_state(), "open_alerts": self.open_alerts,
                "fences": None if self.fences is None else msgspec.to_builtins(self.fences)}

    def load_state(self, data: dict) -> None:
        """Into a state whose engine was built from the configuration."""
        if data["fences"] is not None:  # the fences the engine ran with, before its state
            self.replace_fences(msgspec.convert(data["fences"], ReplaceFences))
        self.engine.load_state(data["engine"])
        self.open_alerts = dict(data["open_alerts"])


@dataclass
class Batch:
    """What processing some records produced, for Kafka and Redis."""

    alerts: list[tuple[dict, bytes, bool]] = field(default_factory=list)  # record, JSON, emit?
    notifications: list[dict] = field(default_factory=list)  # escalations, severity raises
    audit: list[dict] = field(default_factory=list)  # audit-trail entries, in chain order
    record: list[Written] = field(default_factory=list)  # entries of the shipments' records
    open_alerts: dict[str, dict | None] = field(default_factory=dict)  # id -> record; None: closed
    alert_records: dict[str, dict | None] = field(default_factory=dict)  # None: forgotten
    commands: dict[int, dict] = field(default_factory=dict)  # input offset -> command's outcome
    links: dict[str, str] = field(default_factory=dict)  # device -> shipment, named by orders
    ordered: set[str] = field(default_factory=set)  # shipments whose orders came
    dead: list[tuple[int, bytes]] = field(default_factory=list)  # input offset, JSON
    changed: set[int] = field(default_factory=set)  # dense shipment ids
    history: dict[str, list[bytes]] = field(default_factory=dict)


class Record(Protocol):
    """A consumed record as confluent-kafka's `Message` presents it (the Faust runtime adapts
    its own messages to this)."""

    def offset(self) -> int: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> list[tuple[str, bytes]] | None: ...

    def timestamp(self) -> tuple[int, int]: ...


class _Route(msgspec.Struct):
    shipment_id: str | None = None
    device_id: str | None = None


class _Order(msgspec.Struct):
    type: str | None = None
    shipment_id: str | None = None
    device_ids: list[str] | None = None


_route = msgspec.json.Decoder(_Route).decode
_order = msgspec.json.Decoder(_Order).decode
OPEN_STATES = frozenset({"open", "acknowledged"})
log = logging.getLogger("chainsight.worker")
DEAD_MAX_BYTES = 256 << 10  # a dead letter must fit in one Kafka message (1 MB by default)


class Partition:
    """An input partition owned by this worker."""

    def __init__(self, topic: str, number: int, state: PartitionState, offset: int,
                 suppress_alerts: Counter[bytes] | None = None,
                 suppress_dead: set[int] | None = None, history: bool = True) -> None:
        self.topic = topic
        self.number = number
        self.state = state
        self.engine = state.engine
        self.next_offset = offset
        self.snapshot_offset = offset  # input offset of the newest durable snapshot
        self.suppress_alerts = suppress_alerts or Counter()
        self.suppress_dead = suppress_dead or set()
        self.keep_history = history
        self.last_input = 0.0  # monotonic time of the newest record seen
        self.tick_pending = False  # a tick was written and has not come back yet
        self.snapshot_due = 0.0  # monotonic time of the next periodic snapshot

    def process(self, records: list[Record]) -> Batch:
        """Process records (one partition, ascending offsets); skips those already reflected."""
        batch = Batch()
        run: list[Record] = []
        for record in records:
            if record.offset() < self.next_offset:
                continue
            headers = record.headers()
            kind = control.kind(headers) if headers else None
            if kind is None:
                run.append(record)
                continue
            self._events(run, batch)
            run = []
            if kind == control.TICK:
                self.tick_pending = False
            self._control(record, kind, batch)
        self._events(run, batch)
        if records:
            self.next_offset = max(self.next_offset, records[-1].offset() + 1)
        return batch

    def _control(self, record: Record, kind: bytes, batch: Batch) -> None:
        """Apply a control record; a refused or malformed one is dead-lettered with the reason
        (the partition goes on)."""
        value = record.value() or b""
        command = None
        try:
            if kind == control.COMMAND:
                command = decode_command(value)
                out = self.state.replace_fences(command) if isinstance(command, ReplaceFences) \
                    else self.engine.apply(command)
            else:
                out = control.apply(self.engine, kind, value)
        except CommandRefused as exc:
            log.info("partition %d offset %d: %s", self.number, record.offset(), exc)
            self._dead(record, f"control record refused: {exc}",
                       value.decode(errors="replace"), batch)
            if kind == control.COMMAND:  # what the API answers the user
                batch.commands[record.offset()] = {"refused": str(exc),
                                                   "unknown": isinstance(exc, UnknownAlert)}
            return
        self._collect(out, batch)
        if command is not None and not isinstance(command, ReplaceFences):
            batch.commands[record.offset()] = {"alert": self.engine.alert(command.alert_id)}

    def moved_since_snapshot(self) -> bool:
        """True when records were processed since the last snapshot."""
        return self.next_offset != self.snapshot_offset

    def _events(self, run: list[Record], batch: Batch) -> None:
        if not run:
            return
        values = [r.value() or b"" for r in run]
        now = max(r.timestamp()[1] for r in run)
        try:
            out = self.engine.process(values, first_line=0, now=now if now > 0 else None)
        except Exception as exc:  # an engine bug must not stop the partition: keep the records
            log.exception("partition %d: engine failed on offsets %d..%d", self.number,
                          run[0].offset(), run[-1].offset())
            for record, value in zip(run, values, strict=True):
                self._dead(record, f"engine error: {type(exc).__name__}: {exc}",
                           value.decode(errors="replace"), batch)
            return
        rejected = {d["line"] for d in out.dead_letters}
        for dead in out.dead_letters:
            self._dead(run[dead["line"]], dead["reason"], dead["payload"], batch)
        for i, value in enumerate(values):  # the engine skips blank lines; they are malformed
            if not value.strip():
                rejected.add(i)
                reason = "empty message" if run[i].value() is not None else "tombstone (no value)"
                self._dead(run[i], reason, value.decode(errors="replace"), batch)
        self._collect(out, batch)
        self._orders(values, rejected, batch)
        if self.keep_history:
            self._history(run, values, rejected, batch)

    def _orders(self, values: list[bytes], rejected: set[int], batch: Batch) -> None:
        """The shipments the run's orders name, and the links of their devices as the engine
        has them now (what producers route device events without `shipment_id` by:
        `publish.Router`). Orders are found by one scan of the run, not a look at each event."""
        blob = b"\n".join(values)
        at = blob.find(b'"order"')
        if at < 0:
            return
        ends = np.cumsum(np.fromiter(map(len, values), np.int64, len(values)) + 1)
        while at >= 0:
            i = int(np.searchsorted(ends, at, side="right"))
            at = blob.find(b'"order"', int(ends[i]))
            if i in rejected:
                continue
            try:
                order = _order(values[i])
            except msgspec.DecodeError:
                continue
            if order.type != "order" or order.shipment_id is None:
                continue
            batch.ordered.add(order.shipment_id)
            for device in order.device_ids or ():
                shipment = self.engine.linked_shipment(device)
                if shipment is not None:
                    batch.links[device] = shipment

    def _dead(self, record: Record, reason: str, payload: str, batch: Batch) -> None:
        offset, key = record.offset(), record.key()
        if offset in self.suppress_dead:
            self.suppress_dead.discard(offset)
            return
        name = None if key is None else key.decode(errors="replace")
        dead = {"reason": reason, "payload": payload, "topic": self.topic,
                "partition": self.number, "offset": offset, "key": name}
        value = orjson.dumps(dead)
        keep = max(len(payload), len(name or ""))
        while len(value) > DEAD_MAX_BYTES:  # a huge record: keep the start of payload and key
            keep //= 2
            dead.update(payload=payload[:keep], key=name and name[:keep],
                        reason=f"{reason} (payload and key cut to {keep} characters)")
            value = orjson.dumps(dead)
        batch.dead.append((offset, value))

    def _collect(self, out: Output, batch: Batch) -> None:
        batch.changed |= out.changed
        suppress = self.suppress_alerts
        for record in out.alerts:
            value = orjson.dumps(record)
            emit = True
            if suppress and suppress[value] > 0:
                suppress[value] -= 1
                emit = False
            batch.alerts.append((record, value, emit))
        batch.notifications += out.notifications
        batch.audit += out.audit
        batch.record += out.record
        open_alerts = self.state.open_alerts
        for aid in {r["alert_id"] for r in out.alerts + out.notifications + out.confirmed
                    if r["details"].get("transition") != "notice"}:
            current = batch.alert_records[aid] = self.engine.alert(aid)  # its latest record
            if current is not None and current["state"] in OPEN_STATES:
                open_alerts[aid] = current
            else:
                open_alerts.pop(aid, None)
                current = None
            batch.open_alerts[aid] = current

    def _history(self, run: list[Record], values: list[bytes], rejected: set[int],
                 batch: Batch) -> None:
        """Valid events by shipment: the record's key when it names a shipment (the producer
        path keys so), else the shipment the event names or its device is linked to."""
        by_key: dict[bytes | None, str | None] = {}
        history = batch.history
        for i, record in enumerate(run):
            if i in rejected:
                continue
            key = record.key()
            if key not in by_key:
                name = None if key is None else key.decode(errors="replace")
                by_key[key] = name if name is not None and self.engine.has_shipment(name) \
                    else None
            shipment = by_key[key] or self._shipment_of(values[i])
            if shipment is not None:
                history.setdefault(shipment, []).append(values[i])

    def _shipment_of(self, value: bytes) -> str | None:
        try:
            route = _route(value)
        except msgspec.DecodeError:
            return None
        if route.shipment_id is not None or route.device_id is None:
            return route.shipment_id
        return self.engine.linked_shipment(route.device_id)

    def views(self, changed: set[int]) -> dict[str, dict]:
        """STATE.json entries of the given shipments, by shipment id."""
        return self.engine.shipment_views(changed)

    def all_views(self) -> dict[str, dict]:
        return self.engine.shipments()

    def last_seen(self, names: list[str]) -> dict[str, int | None]:
        """The newest event time seen for each of these shipments."""
        return {name: self.engine.last_seen(name) for name in names}

    def order_details(self, names: Iterable[str]) -> tuple[dict, dict, dict]:
        """For the API, what these shipments' orders said: customers, order facts (shipment
        id -> each), and the shipments of their SSCCs."""
        engine = self.engine
        customers = {name: engine.customer_of(name) for name in names}
        facts = {name: engine.order_facts(name) for name in customers}
        ssccs = {f["sscc"]: name for name, f in facts.items() if f and f.get("sscc")}
        return customers, facts, ssccs

    def progress(self, worker: str, now_ms: int) -> dict:
        return {"offset": self.next_offset, "counters": dict(self.engine.counters),
                "worker": worker, "at": now_ms, "stream_time": self.engine.stream_time,
                "eta": self.engine.eta_totals()}
