"""Corridor centre lines as flat arrays, for measuring the distance left along a route."""

from __future__ import annotations

import numpy as np

from chainsight.eta.features import EARTH_M
from chainsight.geofence import FenceSet


class RouteTable:
    """The lines of the corridors orders name, numbered as they are first asked for; rebuilt
    when the fences change."""

    def __init__(self) -> None:
        self.fences: FenceSet | None = None
        self._number: dict[str, int] = {}
        self._parts: list[np.ndarray] = []
        self.lat = self.lon = self.cum = np.zeros(0)
        self.start = self.count = np.zeros(0, np.int64)

    def lines(self, corridors: list[str | None], fences: FenceSet | None) -> np.ndarray:
        """Line numbers of these corridor ids (-1: none, or not a corridor of `fences`)."""
        if fences is not self.fences:
            self.__init__()
            self.fences = fences
        if fences is None:
            return np.full(len(corridors), -1, np.int64)
        out = np.empty(len(corridors), np.int64)
        grown = False
        for j, name in enumerate(corridors):
            k = -1 if name is None else self._number.get(name)
            if k is None:
                line = fences.line(name)
                k = self._number[name] = -1 if line is None else len(self._parts)
                if line is not None:
                    self._parts.append(line)
                    grown = True
            out[j] = k
        if grown:
            self._compile()
        return out

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
