"""The API's backend over an embedded runtime: the engine in this process.

Reads take the runtime's lock; `ingest` processes the events synchronously through the runtime
(`EmbeddedRuntime.process`, in turn with its own thread), so the answer gives exactly what the
engine made of each: rejections with the engine's own dead-letter reasons, and duplicates counted
by the engine (its counters' change across the call). Subscribers are called on the engine's
thread with the runtime's lock held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable

from chainsight.api.backend import Customers, Delta, Ingested, Recorded, Subscriber, T
from chainsight.contract.commands import Acknowledge, ReplaceFences, Resolve
from chainsight.contract.times import iso
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.embedded import EmbeddedRuntime

EMPTY = {"type": "FeatureCollection", "features": []}


def shipment_item(engine: Engine, shipment_id: str, view: dict) -> dict:
    """A shipment as the API shows it: its live view, `shipment_id` and `last_seen`."""
    seen = engine.last_seen(shipment_id)
    return {"shipment_id": shipment_id, **view, "last_seen": None if seen is None else iso(seen)}


class EmbeddedBackend:
    """`Backend` over an `EmbeddedRuntime` (started by the caller)."""

    def __init__(self, runtime: EmbeddedRuntime, fences: dict | None = None,
                 fences_version: int = 0) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.profiles = runtime.engine.profiles
        self._fences, self._fences_version = fences or EMPTY, fences_version
        self._fences_lock = threading.Lock()  # one replacement at a time
        self._subscribers: list[Subscriber] = []
        runtime.subscribe(self._on_output)

    # --- reads ------------------------------------------------------------------------------

    def _items(self, views: dict[str, dict]) -> dict[str, dict]:
        return {name: shipment_item(self.engine, name, view) for name, view in views.items()}

    def shipments(self, names: Collection[str] | None = None) -> dict[str, dict]:
        with self.runtime.lock:
            return self._items(self.engine.shipments(names))

    def _customers(self, names: Iterable[str]) -> dict[str, str | None]:
        """`customers` with the runtime's lock held."""
        return {name: self.engine.customer_of(name) for name in set(names)}

    def customers(self, names: Iterable[str]) -> dict[str, str | None]:
        with self.runtime.lock:
            return self._customers(names)

    def history(self, shipment_id: str) -> list[dict]:
        return self.runtime.calls.history.of(shipment_id)

    def alerts(self, state: str | None = None, kind: str | None = None,
               shipment_id: str | None = None, severity: str | None = None) -> list[dict]:
        with self.runtime.lock:
            return self.engine.alerts(state=state, kind=kind, shipment_id=shipment_id,
                                      severity=severity)

    def alert(self, alert_id: str) -> dict | None:
        with self.runtime.lock:
            return self.engine.alert(alert_id)

    def audit_trail(self, alert_id: str) -> list[dict]:
        with self.runtime.lock:
            return self.engine.audit_trail(alert_id)

    def metrics(self) -> dict[str, float]:
        with self.runtime.lock:
            return self.engine.metrics()

    def stream_time(self) -> int:
        with self.runtime.lock:
            return self.engine.stream_time

    def order_facts(self, shipment_id: str) -> dict | None:
        with self.runtime.lock:
            return self.engine.order_facts(shipment_id)

    def recorded(self, shipment_id: str) -> Recorded | None:
        with self.runtime.lock:
            facts = self.engine.order_facts(shipment_id)
            if facts is None:
                return None
            item = self._items(self.engine.shipments([shipment_id]))[shipment_id]
            length, head = self.engine.record_head(shipment_id)
        entries = self.runtime.calls.records.entries(shipment_id)[:length]  # newer: after head
        return Recorded(facts, item, entries, length, head)

    def anchor(self, shipment_id: str) -> dict | None:
        return self.runtime.calls.anchors.proof(shipment_id)

    def shipment_of_sscc(self, sscc: str) -> str | None:
        with self.runtime.lock:
            return self.engine.shipment_of_sscc(sscc)

    def fences(self) -> dict:
        return self._fences

    # --- writes -----------------------------------------------------------------------------

    def ingest(self, lines: list[bytes], objects: list[object | None]) -> Ingested:
        out, counted = self.runtime.process(lines) if lines else (None, {})
        rejected = {dead["line"] - 1: dead["reason"]
                    for dead in ([] if out is None else out.dead_letters)}
        duplicates = counted.get("duplicates", 0)
        return Ingested(counted.get("events", 0) - duplicates, duplicates, rejected)

    def apply(self, command: Acknowledge | Resolve) -> dict:
        self.runtime.apply(command)
        with self.runtime.lock:
            return self.engine.alert(command.alert_id)

    def replace_fences(self, geojson: dict) -> int:
        with self._fences_lock:
            version = self._fences_version + 1
            self.runtime.apply(ReplaceFences(geojson, version))
            self._fences, self._fences_version = geojson, version
        return version

    # --- live --------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def _on_output(self, out: Output) -> None:
        """The runtime's subscriber (engine thread, runtime lock held)."""
        if not self._subscribers or not (out.changed or out.alerts or out.notifications):
            return
        delta = Delta(out.alerts, out.notifications, bool(out.changed),
                      lambda: self._items(self.engine.shipment_views(out.changed)),
                      self._customers)
        for subscriber in self._subscribers:
            subscriber(delta)

    def watch(self, names: Collection[str] | None,
              join: Callable[[dict[str, dict], Customers], T]) -> T:
        with self.runtime.lock:
            return join(self._items(self.engine.shipments(names)), self._customers)

    def health(self) -> str | None:
        if not self.runtime.running:
            return "the engine is not running"
        with self.runtime.lock:  # the engine answers
            return None

    def close(self) -> None:
        """The runtime is the caller's to stop."""
