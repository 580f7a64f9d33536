"""The interface every rule implements; the engine calls these hooks in event-time order."""

from __future__ import annotations

from typing import Protocol

from chainsight.alerts.book import AlertBook
from chainsight.events import Order, Scan
from chainsight.ingest import Rows
from chainsight.state import State


class Rule(Protocol):
    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        """A run of gps/sensor rows in event-time order, shipments already resolved."""

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        """A scan or order event, after the shipment's state has been updated."""

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        """Event time has advanced to `clock`: fire time-driven conditions."""
