"""The interface every rule implements, and what the cold-chain rules share.

Every cold-chain condition is a contract `temperature_excursion` alert; `details.rule` says which
rule raised it: `continuous` (the contract's rule), `cumulative`, `mkt`, `humidity` or
`door_open`. Each rule has its own alert key, so its alerts open and resolve independently.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Self

import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import MINUTE_MS, Profile
from chainsight.contract.events import Order, Scan
from chainsight.engine.state import Columns, State
from chainsight.ingest.rows import Rows

if TYPE_CHECKING:
    from chainsight.rules.advisor import ColdStoreAdvisor

TEMPERATURE = "temperature_excursion"


class Rule:
    """What the engine asks of every rule; the defaults do nothing (but for the state)."""

    name: str  # names the rule's state in snapshots
    # attributes holding per-shipment / per-device state: Columns, or dicts keyed by dense id
    shipment_state: tuple[str, ...] = ()
    device_state: tuple[str, ...] = ()

    def dump_state(self) -> dict:
        """What the rule remembers between batches (plain data and NumPy arrays): by default
        the attributes `shipment_state` and `device_state` name."""
        return {name: _dump(getattr(self, name))
                for name in (*self.shipment_state, *self.device_state)}

    def load_state(self, data: dict) -> None:
        """Take over what `dump_state` gave (of a rule built from the same configuration)."""
        for name in (*self.shipment_state, *self.device_state):
            mine = getattr(self, name)
            if isinstance(mine, Columns | IdSets):
                mine.load_state(data[name])
            else:
                setattr(self, name, dict(data[name]))

    def copy_entities(self, src: Self, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Make the state of these shipments and devices (dense ids) equal to `src`'s (a rule
        of the same configuration); other entities' state stays. The default copies the rows
        and dict entries that `shipment_state` and `device_state` name (dict values deep-copied,
        absent entries removed): a dict keyed by shipment whose values list devices is copied
        as is, so it agrees with the device rows when the devices linked to the shipments in
        either rule are among `devices`."""
        for names, ids in ((self.shipment_state, shipments), (self.device_state, devices)):
            for name in names:
                mine, theirs = getattr(self, name), getattr(src, name)
                if isinstance(mine, Columns):
                    mine.copy_rows(theirs, ids)
                    continue
                for key in ids.tolist():
                    if key in theirs:
                        mine[key] = copy.deepcopy(theirs[key])
                    else:
                        mine.pop(key, None)

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        """A run of gps/sensor rows in event-time order, shipments already resolved."""

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        """A scan or order event, after the shipment's state has been updated."""

    def on_quiet_business(self, rows: Rows, events: list[Scan | Order], shipments: np.ndarray,
                          state: State) -> np.ndarray:
        """Business events of distinct shipments (`rows` theirs, `shipments` as int64), the
        shipments' state already updated, for a rule that has `on_business`: take at once
        those on which `on_business` would emit nothing, and return a mask of the others,
        which are then passed to `on_business` one at a time. By default: all of them."""
        return np.ones(len(events), np.bool_)

    def on_business_rows(self, rows: Rows, events: list[Scan | Order], state: State,
                         book: AlertBook) -> None:
        """Business events of distinct shipments (`rows` theirs, in event-time order) whose
        `on_business` has been called: for a rule that takes them all at once."""

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        """Event time has advanced to `clock`: fire time-driven conditions."""

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        """An order set the shipment's product profile (None: one no profile file defines)."""

    def view(self, shipments: np.ndarray) -> dict[str, list]:
        """Extra fields of the live state of `shipments` (dense ids): name -> one value each."""
        return {}

    def metrics(self) -> dict[str, int]:
        """The rule's own counters, by metric name."""
        return {}


class IdSets(dict[int, set[int]]):
    """Sets of dense ids by dense id (e.g. a shipment's sensors), as rules keep them."""

    def dump_state(self) -> list[list]:
        """[key, members] pairs (snapshots hold no sets); order kept."""
        return [[key, list(members)] for key, members in self.items()]

    def load_state(self, pairs: list[list]) -> None:
        self.clear()
        self.update((key, set(members)) for key, members in pairs)


def _dump(value: object) -> object:
    """A rule's state attribute as plain data: Columns and IdSets dump themselves, other
    dicts (keyed by dense id) become [key, value] pairs."""
    return value.dump_state() if isinstance(value, Columns | IdSets) else list(value.items())


def relink(sensors_of: dict[int, set[int]], d: int, old: int, new: int) -> None:
    """Sensor `d` now reports for shipment `new` instead of `old` (-1: none)."""
    if old >= 0:
        sensors_of[old].discard(d)
    if new >= 0:
        sensors_of.setdefault(new, set()).add(d)


def devices_of(shipments: np.ndarray, device_ship: np.ndarray, devices: np.ndarray,
               n_shipments: int) -> tuple[np.ndarray, np.ndarray]:
    """Those of `devices` (dense ids) whose shipment, `device_ship[device]` (-1: none), is one
    of `shipments` (distinct, of `n_shipments`), each with its shipment's position there."""
    position = np.full(n_shipments, -1, np.int64)
    position[shipments] = np.arange(len(shipments))
    of = np.where(device_ship[devices] >= 0, position[device_ship[devices]], -1)
    return devices[of >= 0], of[of >= 0]


def minutes_ms(minutes: float | None) -> int:
    """Minutes as milliseconds; -1 (rule off) for None."""
    return -1 if minutes is None else int(minutes * MINUTE_MS)


def open_excursion(book: AlertBook, state: State, advisor: ColdStoreAdvisor | None, rule: str,
                   s: int, d: int, at: int, started: int, details: dict,
                   reading_c: float = math.nan) -> None:
    """Open (or continue) a cold-chain alert of `rule`, with the suggested action if any.
    `reading_c`: the temperature of the reading that opens it, when it has one."""
    details = {"rule": rule, "profile": state.info[s].profile, **details}
    if "limit_c" not in details:  # the contract's temperature fields, for every rule
        last = reading_c if not math.isnan(reading_c) else float(state.shipment.last_temp_c[s])
        if not math.isnan(last):
            details["min_c" if last < state.shipment.min_c[s] else "max_c"] = last
        details["limit_c"] = float(state.shipment.max_c[s])
    action = None if advisor is None else advisor.suggest(s, at, state)
    if action is not None:
        details["suggested_action"] = action
    book.open(TEMPERATURE, state.shipments.names[s], state.devices.names[d], None, at,
              "warning", details, rule=rule, started=started)


def resolve_excursion(book: AlertBook, state: State, rule: str, s: int, d: int, at: int,
                      details: dict) -> None:
    book.resolve(TEMPERATURE, state.shipments.names[s], state.devices.names[d], None, at,
                 details, rule=rule)
