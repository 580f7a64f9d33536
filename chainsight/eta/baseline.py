"""The baseline ETA: the distance left divided by the lane's average speed over its past
deliveries (the shard's average over all lanes for a lane without any yet, a default before
any delivery). Kept per shard of shipments, like the model (see `eta.model`)."""

from __future__ import annotations

import numpy as np

DEFAULT_KMH = 50.0


class LaneSpeeds:
    """Lanes (origin -> destination, by name) and, per shard, the kilometres and hours of their
    deliveries."""

    def __init__(self, shards: int = 1) -> None:
        self.index: dict[str, int] = {}
        self.km = np.zeros((shards, 16))
        self.hours = np.zeros((shards, 16))

    def lane(self, name: str) -> int:
        k = self.index.get(name)
        if k is None:
            k = self.index[name] = len(self.index)
            if k >= self.km.shape[1]:
                grown = max(16, 2 * k)
                self.km = np.pad(self.km, ((0, 0), (0, grown - self.km.shape[1])))
                self.hours = np.pad(self.hours, ((0, 0), (0, grown - self.hours.shape[1])))
        return k

    def kmh(self, shard: np.ndarray, lanes: np.ndarray) -> np.ndarray:
        """Average speed on each (shard, lane) (-1: unknown lane)."""
        total_km, total_h = self.km.sum(axis=1)[shard], self.hours.sum(axis=1)[shard]
        overall = np.where(total_h > 0, total_km / np.where(total_h > 0, total_h, 1.0),
                           DEFAULT_KMH)
        lanes = np.asarray(lanes)
        known = lanes >= 0
        km, h = np.zeros(len(lanes)), np.zeros(len(lanes))
        km[known], h[known] = self.km[shard[known], lanes[known]], self.hours[shard[known],
                                                                             lanes[known]]
        return np.where(h > 0, km / np.where(h > 0, h, 1.0), overall)

    def deliver(self, shard: int, lane: int, km: float, hours: float) -> None:
        if lane >= 0 and km > 0 and hours > 0:
            self.km[shard, lane] += km
            self.hours[shard, lane] += hours

    def dump_state(self) -> dict:
        n = len(self.index)
        return {"names": list(self.index), "km": self.km[:, :n].copy(),
                "hours": self.hours[:, :n].copy()}

    def load_state(self, data: dict) -> None:
        self.index = {name: k for k, name in enumerate(data["names"])}
        shards, n = self.km.shape[0], len(self.index)
        size = max(16, n)
        self.km, self.hours = np.zeros((shards, size)), np.zeros((shards, size))
        self.km[:, :n] = np.asarray(data["km"], np.float64).reshape(shards, n)
        self.hours[:, :n] = np.asarray(data["hours"], np.float64).reshape(shards, n)
