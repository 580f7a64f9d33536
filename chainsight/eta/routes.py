"""Corridor centre lines as flat arrays, for measuring the distance left along a route."""

from __future__ import annotations

import numpy as np

from chainsight.eta.features import EARTH_M
from chainsight.geofence import FenceSet


class RouteTable:
    """The lines of the corridors lanes are named after (a lane is its orders' corridor when
    they name one), numbered as they are first asked for; rebuilt when the fences or the
    lanes' names change."""

    def __init__(self) -> None:
        self.fences: FenceSet | None = None
        self.names: dict[str, int] = {}
        self.of_lane = np.zeros(0, np.int64)  # lane -> line number (-1: not a corridor)
        self._parts: list[np.ndarray] = []
        self.lat = self.lon = self.cum = np.zeros(0)
        self.start = self.count = np.zeros(0, np.int64)

    def lines(self, lanes: np.ndarray, names: dict[str, int],
              fences: FenceSet | None) -> np.ndarray:
        """Line numbers of these lanes (-1: none, or not a corridor of `fences`); `names`:
        every lane's number by name, in the order they were numbered."""
        if fences is not self.fences or names is not self.names:
            self.__init__()
            self.fences, self.names = fences, names
        if fences is None or not names:
            return np.full(len(lanes), -1, np.int64)
        if len(self.of_lane) < len(names):  # lanes not asked for yet
            parts, numbers = len(self._parts), []
            for name in list(names)[len(self.of_lane):]:
                line = fences.line(name)
                numbers.append(-1 if line is None else len(self._parts))
                if line is not None:
                    self._parts.append(line)
            self.of_lane = np.r_[self.of_lane, np.array(numbers, np.int64)]
            if len(self._parts) > parts:
                self._compile()
        return np.where(lanes >= 0, self.of_lane[np.maximum(lanes, 0)], -1)

    def _compile(self) -> None:
        lon = np.concatenate([p[:, 0] for p in self._parts])
        lat = np.concatenate([p[:, 1] for p in self._parts])
        self.count = np.array([len(p) for p in self._parts], np.int64)
        self.start = np.cumsum(self.count) - self.count
        step = np.zeros(len(lat))
        kx = np.cos(np.radians(lat[1:])) * np.radians(np.diff(lon))
        step[1:] = EARTH_M * np.hypot(kx, np.radians(np.diff(lat)))
        step[self.start] = 0.0  # each line starts at 0
        cum = np.cumsum(step)
        self.cum = cum - np.repeat(cum[self.start], self.count)
        self.lat, self.lon = lat, lon
