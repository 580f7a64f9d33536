"""Each shipment's recent events as they were sent: the API's `history` of a shipment.

The embedded runtime keeps it beside the engine and, with a `Store`, in its snapshots (the log's
events after a snapshot are remembered again on recovery), so it survives a restart as the state
does. (The Kafka runtime keeps it in Redis.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

import orjson

from chainsight.engine.core import Engine, Output


class History:
    """Recent accepted events of each shipment, as sent, newest last: at most `per_shipment`
    of each, for the `max_shipments` most recently active shipments. A resent event (same
    id, or same type, device or shipment and ts) is kept once."""

    def __init__(self, per_shipment: int = 50, max_shipments: int = 100_000) -> None:
        self.per_shipment = per_shipment
        self.max_shipments = max_shipments
        self._events: OrderedDict[str, tuple[deque[dict], set[tuple]]] = OrderedDict()
        self._lock = threading.Lock()  # readers (API threads) against the runtime's thread

    def remember(self, engine: Engine, lines: list[bytes], out: Output) -> None:
        """Put the lines the engine accepted (those not dead-lettered in `out`) under their
        shipment: a device's event under the shipment the device is linked to now. Call
        with the engine's lock held, after `process`."""
        rejected = {dead["line"] - 1 for dead in out.dead_letters}
        events = []
        for i, line in enumerate(lines):
            if i not in rejected:
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError:  # accepted, but beyond orjson (1,000 deep)
                    continue
        linked = {d: engine.linked_shipment(d) for d in
                  {e["device_id"] for e in events if not e.get("shipment_id")
                   and isinstance(e.get("device_id"), str)}}
        for event in events:
            shipment = event.get("shipment_id") or linked.get(event.get("device_id"))
            if isinstance(shipment, str):
                self.add(shipment, event)

    @staticmethod
    def identity(event: dict) -> tuple:
        if event.get("event_id") is not None:
            return ("id", event["event_id"])
        return (event.get("type"), event.get("device_id") or event.get("shipment_id"),
                event.get("ts"))

    def add(self, shipment_id: str, event: dict) -> None:
        key = self.identity(event)
        with self._lock:
            recent = self._events.get(shipment_id)
            if recent is None:
                recent = self._events[shipment_id] = (deque(), set())
                if len(self._events) > self.max_shipments:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(shipment_id)
                if key in recent[1]:
                    return
            events, keys = recent  # the identities of `events`, to find a resent one at once
            if len(events) == self.per_shipment:
                keys.discard(self.identity(events.popleft()))
            events.append(event)
            keys.add(key)

    def of(self, shipment_id: str) -> list[dict]:
        with self._lock:
            recent = self._events.get(shipment_id)
            return [] if recent is None else list(recent[0])

    def dump(self) -> dict[str, list[bytes]]:
        """For a snapshot: each shipment's events as JSON, least recently active first."""
        with self._lock:
            return {name: [orjson.dumps(e) for e in events]
                    for name, (events, _) in self._events.items()}

    def load(self, data: dict[str, list[bytes]]) -> None:
        """What `dump` gave, in place of what is remembered."""
        with self._lock:
            self._events.clear()
        for name, events in data.items():
            for event in events:
                self.add(name, orjson.loads(event))
