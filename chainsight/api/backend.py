"""What the API needs of a runtime: one narrow interface, whichever runtime is behind it.

The routes, the websocket hub, webhooks and metrics use a `Backend` only: `EmbeddedBackend`
(`api/embedded.py`, the engine in this process) or `KafkaBackend` (`api/kafka.py`, workers
reached through Kafka and Redis). Shipments are shown as API items: the STATE.json view with
`shipment_id` and `last_seen`. Subscribers receive a `Delta` for every step that changed
something.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

from chainsight.config import Profile
from chainsight.contract.commands import Acknowledge, Resolve

Customers = Callable[[Iterable[str]], dict[str, str | None]]  # shipment ids -> customer ids
T = TypeVar("T")


class Unavailable(Exception):
    """The runtime cannot be reached now (the API answers 503)."""


class NotApplied(Exception):
    """A command was stored but the runtime has not carried it out in time."""


@dataclass
class Ingested:
    """What became of ingested lines: `rejected` maps a line's index to the reason."""

    accepted: int
    duplicates: int
    rejected: dict[int, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A shipment's traceability: what its orders said, its item, and its tamper-evident
    record (the entries up to the head, the number of entries and the head's hash)."""

    facts: dict
    item: dict
    entries: list[dict]
    length: int
    head: str


class Delta:
    """One step's changes: alert records, notifications, and the changed shipments' items
    (built on first use, in the subscriber's call). `customers` answers within that call."""

    def __init__(self, alerts: list[dict], notifications: list[dict], changed: bool,
                 items: Callable[[], dict[str, dict]], customers: Customers) -> None:
        self.alerts, self.notifications, self.changed = alerts, notifications, changed
        self._items = items
        self.customers = customers

    @cached_property
    def items(self) -> dict[str, dict]:
        return self._items()


Subscriber = Callable[[Delta], None]


class Backend(Protocol):
    profiles: dict[str, Profile]  # the product profiles the engines run with

    def shipments(self, names: Collection[str] | None = None) -> dict[str, dict]:
        """The items of the named shipments (all when None; unknown names left out)."""

    def customers(self, names: Iterable[str]) -> dict[str, str | None]:
        """The customer of each shipment (None when unknown or not given)."""

    def history(self, shipment_id: str) -> list[dict]:
        """The shipment's recent accepted events, as sent, newest last."""

    def alerts(self, state: str | None = None, kind: str | None = None,
               shipment_id: str | None = None, severity: str | None = None) -> list[dict]:
        """Current alert records, newest first, filtered."""

    def alert(self, alert_id: str) -> dict | None:
        """An alert's current record; None when unknown."""

    def audit_trail(self, alert_id: str) -> list[dict]:
        """The alert's audit entries, oldest first."""

    def metrics(self) -> dict[str, float]:
        """The engine's counters (`events`, `rejected`, `duplicates`, `late_dropped`),
        `shipments`, open alerts by kind (`open_alerts.KIND`) and the ETA metrics
        (`eta_predictions`, `eta_deliveries`, `eta_accuracy.*`)."""

    def ingest(self, lines: list[bytes], objects: list[object | None]) -> Ingested:
        """Take contract events (`objects`: each line decoded, where it already was); answers
        once they are durable."""

    def apply(self, command: Acknowledge | Resolve) -> dict:
        """Carry out a lifecycle command; the alert's new record. UnknownAlert or
        CommandRefused when refused (nothing changed), NotApplied when not answered in time."""

    def stream_time(self) -> int:
        """The newest stream time (epoch ms) of the engines; 0 before any event."""

    def order_facts(self, shipment_id: str) -> dict | None:
        """What the shipment's orders said (`Engine.order_facts`); None when unknown."""

    def recorded(self, shipment_id: str) -> Recorded | None:
        """The shipment's traceability; None when unknown."""

    def anchor(self, shipment_id: str) -> dict | None:
        """The proof that the shipment's record head was anchored; None when not (yet)."""

    def shipment_of_sscc(self, sscc: str) -> str | None:
        """The shipment whose order carries this SSCC (the newest such)."""

    def fences(self) -> dict:
        """The geofences in force (GeoJSON)."""

    def replace_fences(self, geojson: dict) -> int:
        """Put a valid fence set live; its version. CommandRefused when refused."""

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` with every delta from now on (on a thread of the backend's)."""

    def watch(self, names: Collection[str] | None,
              join: Callable[[dict[str, dict], Customers], T]) -> T:
        """Call `join` with the items of `names` (all when None) so that no delta is handed
        to subscribers between the read and the end of the call; returns what it returns."""

    def health(self) -> str | None:
        """Why the backend cannot serve now; None when it can."""

    def close(self) -> None:
        """Release connections and threads."""
