"""Samples awaiting their label: the features of every ETA published for a trip, kept until
the trip's true arrival is known (its delivery), then learned from and scored."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_AGE_MS = 7 * 24 * 3_600_000  # a trip not delivered within a week of event time: forgotten
COLUMNS = ("ship", "at", "fix_ts", "x", "baseline_eta", "eta")


class Taken(NamedTuple):
    at: np.ndarray  # when each ETA was made
    fix_ts: np.ndarray  # time of the position it was made from
    x: np.ndarray  # its features
    baseline_eta: np.ndarray
    eta: np.ndarray


class Samples:
    """Rows of (shipment, at, fix time, features, baseline ETA, model ETA), appended in
    batches (into arrays grown geometrically), taken per shipment; a taken row's shipment is
    -1 until the rows are compacted."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self._n = 0  # rows in use
        self._dead = 0
        self._alloc(64)

    def _alloc(self, size: int) -> None:
        old = {name: getattr(self, name) for name in COLUMNS} if hasattr(self, "ship") else {}
        self.ship = np.full(size, -1, np.int64)
        self.at, self.fix_ts = np.zeros(size, np.int64), np.zeros(size, np.int64)
        self.x = np.zeros((size, self.n_features))
        self.baseline_eta, self.eta = np.zeros(size, np.int64), np.zeros(size, np.int64)
        for name, column in old.items():
            getattr(self, name)[:self._n] = column[:self._n]

    def __len__(self) -> int:
        return self._n - self._dead

    def add(self, ship: np.ndarray, at: np.ndarray, fix_ts: np.ndarray, x: np.ndarray,
            baseline_eta: np.ndarray, eta: np.ndarray) -> None:
        n, k = self._n, len(ship)
        if n + k > len(self.ship):
            self._alloc(max(2 * len(self.ship), n + k))
        for name, values in zip(COLUMNS, (ship, at, fix_ts, x, baseline_eta, eta),
                                strict=True):
            getattr(self, name)[n:n + k] = values
        self._n += k

    def take(self, s: int) -> Taken:
        """The samples of shipment `s`, in the order they were added; removed."""
        rows = np.flatnonzero(self.ship[:self._n] == s)
        taken = Taken(self.at[rows], self.fix_ts[rows], self.x[rows], self.baseline_eta[rows],
                      self.eta[rows])
        self.ship[rows] = -1
        self._dead += len(rows)
        if self._dead > 1024 and self._dead * 2 > self._n:
            self._compact()
        return taken

    def take_many(self, ships: list[int]) -> dict[int, Taken]:
        """`take` of several shipments at once (one pass over the rows)."""
        rows = np.flatnonzero(np.isin(self.ship[:self._n], ships))
        rows = rows[np.argsort(self.ship[rows], kind="stable")]
        owner = self.ship[rows]
        cuts = np.flatnonzero(np.diff(owner)) + 1
        out = {int(self.ship[g[0]]): Taken(self.at[g], self.fix_ts[g], self.x[g],
                                           self.baseline_eta[g], self.eta[g])
               for g in np.split(rows, cuts) if len(g)}
        self.ship[rows] = -1
        self._dead += len(rows)
        if self._dead > 1024 and self._dead * 2 > self._n:
            self._compact()
        return out

    def expire(self, before: int) -> None:
        """Forget samples made before `before` (trips that never got a delivery)."""
        old = (self.at[:self._n] < before) & (self.ship[:self._n] >= 0)
        if old.any():
            self.ship[:self._n][old] = -1
            self._dead += int(old.sum())
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self.ship[:self._n] >= 0)
        for name in COLUMNS:
            column = getattr(self, name)
            column[:len(keep)] = column[keep]
        self.ship[len(keep):self._n] = -1
        self._n, self._dead = len(keep), 0

    def dump_state(self) -> dict:
        keep = self.ship[:self._n] >= 0
        return {name: getattr(self, name)[:self._n][keep] for name in COLUMNS}

    def load_state(self, data: dict) -> None:
        n = len(data["ship"])
        self._n = self._dead = 0
        self._alloc(max(64, n))
        self.add(*(np.asarray(data[name]) if name != "x" else
                   np.asarray(data[name], np.float64).reshape(n, self.n_features)
                   for name in COLUMNS))
