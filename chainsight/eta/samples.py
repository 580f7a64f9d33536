"""Samples awaiting their label: the features of every ETA published for a trip, kept until
the trip's true arrival is known (its delivery), then learned from and scored."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_AGE_MS = 7 * 24 * 3_600_000  # a trip not delivered within a week of event time: forgotten


class Taken(NamedTuple):
    at: np.ndarray  # when each ETA was made
    fix_ts: np.ndarray  # time of the position it was made from
    x: np.ndarray  # its features
    baseline_eta: np.ndarray
    eta: np.ndarray


class Samples:
    """Rows of (shipment, at, fix time, features, baseline ETA, model ETA), appended in
    batches, taken per shipment."""

    def __init__(self, n_features: int) -> None:
        self.ship = np.zeros(0, np.int64)
        self.at = np.zeros(0, np.int64)
        self.fix_ts = np.zeros(0, np.int64)
        self.x = np.zeros((0, n_features))
        self.baseline_eta = np.zeros(0, np.int64)
        self.eta = np.zeros(0, np.int64)
        self._dead = 0

    def __len__(self) -> int:
        return len(self.ship) - self._dead

    def add(self, ship: np.ndarray, at: np.ndarray, fix_ts: np.ndarray, x: np.ndarray,
            baseline_eta: np.ndarray, eta: np.ndarray) -> None:
        self.ship = np.concatenate([self.ship, ship])
        self.at = np.concatenate([self.at, at])
        self.fix_ts = np.concatenate([self.fix_ts, fix_ts])
        self.x = np.concatenate([self.x, x])
        self.baseline_eta = np.concatenate([self.baseline_eta, baseline_eta])
        self.eta = np.concatenate([self.eta, eta])

    def take(self, s: int) -> Taken:
        """The samples of shipment `s`, in the order they were added; removed."""
        rows = np.flatnonzero(self.ship == s)
        taken = Taken(self.at[rows], self.fix_ts[rows], self.x[rows], self.baseline_eta[rows],
                      self.eta[rows])
        self.ship[rows] = -1
        self._dead += len(rows)
        if self._dead > 1024 and self._dead * 2 > len(self.ship):
            self._keep(self.ship >= 0)
        return taken

    def expire(self, before: int) -> None:
        """Forget samples made before `before` (trips that never got a delivery)."""
        old = (self.at < before) & (self.ship >= 0)
        if old.any():
            self.ship[old] = -1
            self._dead += int(old.sum())
            self._keep(self.ship >= 0)

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("ship", "at", "fix_ts", "x", "baseline_eta", "eta"):
            setattr(self, name, getattr(self, name)[keep])
        self._dead = 0

    def dump_state(self) -> dict:
        keep = self.ship >= 0
        return {name: getattr(self, name)[keep]
                for name in ("ship", "at", "fix_ts", "x", "baseline_eta", "eta")}

    def load_state(self, data: dict) -> None:
        for name in ("ship", "at", "fix_ts", "baseline_eta", "eta"):
            setattr(self, name, np.array(data[name], np.int64))
        self.x = np.array(data["x"], np.float64).reshape(len(self.ship), self.x.shape[1])
        self._dead = 0
