"""The baseline ETA: the distance left divided by the lane's average speed over its past
deliveries (all lanes' average for a lane without any yet, a default before any delivery)."""

from __future__ import annotations

import numpy as np

DEFAULT_KMH = 50.0


class LaneSpeeds:
    """Lanes (origin -> destination, by name) and the kilometres and hours of their deliveries."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.km = np.zeros(0)
        self.hours = np.zeros(0)

    def lane(self, name: str) -> int:
        k = self.index.get(name)
        if k is None:
            k = self.index[name] = len(self.index)
            if k >= len(self.km):
                self.km = np.resize(self.km, max(16, 2 * k))
                self.hours = np.resize(self.hours, max(16, 2 * k))
                self.km[k:] = self.hours[k:] = 0.0
        return k

    def kmh(self, lanes: np.ndarray) -> np.ndarray:
        """Average speed on each lane (-1: unknown lane)."""
        total_h = self.hours[:len(self.index)].sum()
        overall = self.km[:len(self.index)].sum() / total_h if total_h > 0 else DEFAULT_KMH
        lanes = np.asarray(lanes)
        known = lanes >= 0
        out = np.full(len(lanes), overall)
        h = self.hours[lanes[known]]
        out[known] = np.where(h > 0, self.km[lanes[known]] / np.where(h > 0, h, 1.0), overall)
        return out

    def deliver(self, lane: int, km: float, hours: float) -> None:
        if lane >= 0 and km > 0 and hours > 0:
            self.km[lane] += km
            self.hours[lane] += hours

    def dump_state(self) -> dict:
        n = len(self.index)
        return {"names": list(self.index), "km": self.km[:n].copy(),
                "hours": self.hours[:n].copy()}

    def load_state(self, data: dict) -> None:
        self.index = {name: k for k, name in enumerate(data["names"])}
        self.km = np.array(data["km"], np.float64)
        self.hours = np.array(data["hours"], np.float64)
