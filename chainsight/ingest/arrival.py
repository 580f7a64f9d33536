"""How far behind the stream each device's newest event arrived.

A device whose clock runs behind, or whose readings travel slowly, sends events that are already
old when they arrive. The live (provisional) rules run events as they arrive, so they ask this
before calling such a device silent. Measured in arrival order, each event against the stream's
time just before it arrived (the stream before the batch, then the batch's events before it, never
beyond the stream's time after the batch, so a clock running ahead cannot inflate it).
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.contract.events import SCAN
from chainsight.engine.state import Columns
from chainsight.ingest.rows import Rows


@numba.njit(cache=True)
def _delays(kind: np.ndarray, device: np.ndarray, key: np.ndarray, ts: np.ndarray, before: int,
            after: int, newest: np.ndarray, delay: np.ndarray) -> None:
    """Each device's delay, from its rows that are its newest event (`newest`: per reorder
    key, these rows admitted)."""
    stream = before
    for i in range(len(ts)):
        if kind[i] < SCAN and ts[i] == newest[key[i]]:
            delay[device[i]] = max(0, min(stream, after) - ts[i])
        stream = max(stream, ts[i])


class ArrivalDelays:
    """Per device (dense id): how far behind the stream its newest event arrived (ms)."""

    def __init__(self) -> None:
        self.devices = Columns(delay=(np.int64, 0))

    def admit(self, rows: Rows, n_devices: int, newest: np.ndarray, before: int,
              after: int) -> None:
        """Rows in arrival order, just admitted to the reordering (`newest`: its newest time
        per key); the stream's time was `before` them and is `after` them."""
        self.devices.ensure(n_devices)
        _delays(rows.kind, rows.device, rows.key, rows.ts, before, after, newest,
                self.devices.delay)

    def dump_state(self) -> dict:
        return self.devices.dump_state()

    def load_state(self, data: dict) -> None:
        self.devices.load_state(data)
