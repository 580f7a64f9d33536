"""ETAs as published: one batch of a prediction run, kept as columns (dicts for thousands of
ETAs would cost more than making them) and turned into ETA.jsonl's records when written.

ETA.jsonl's lines are written by a Numba kernel into one byte buffer: the shipment ids
JSON-encoded once for all batches, the times as `iso` writes them, and `remaining_km`
(rounded to metres) as the shortest decimal that reads back as the same number, as `repr`
writes it."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import orjson

from chainsight import jit
from chainsight.asciibuf import decimal_digits, put, put_digits
from chainsight.contract.times import MAX_MS, MIN_MS, iso_many

MAX_KM = 1e12  # beyond this (or NaN), remaining_km is written by `repr`
LINE_BYTES = 128  # at most, without the shipment id


class ShipmentIds:
    """Shipment ids by dense id (an engine's registry, which only grows) and, for writing,
    JSON-encoded in one buffer (`quoted`)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._data = np.zeros(0, np.uint8)
        self._end = np.zeros(0, np.int64)  # where each id's text ends in `_data`

    def quoted(self) -> tuple[np.ndarray, np.ndarray]:
        """(bytes, end of each id's) of every id, each JSON-encoded."""
        done = len(self._end)
        if done < len(self.names):
            new = [orjson.dumps(name) for name in self.names[done:]]
            self._end = np.r_[self._end, self._end[-1:].sum() + np.cumsum([len(q) for q in new])]
            self._data = np.r_[self._data, np.frombuffer(b"".join(new), np.uint8)]
        return self._data, self._end


class Etas(NamedTuple):
    """`{"shipment_id", "at", "eta", "remaining_km"}` records, as columns."""

    ids: ShipmentIds
    shipment: np.ndarray  # dense ids
    at: np.ndarray  # epoch ms
    eta: np.ndarray  # epoch ms
    remaining_km: np.ndarray

    @property
    def shipment_ids(self) -> list[str]:
        names = self.ids.names
        return [names[s] for s in self.shipment.tolist()]

    def records(self) -> list[dict]:
        """The contract's ETA.jsonl objects."""
        return [{"shipment_id": s, "at": a, "eta": e, "remaining_km": k}
                for s, a, e, k in zip(self.shipment_ids, iso_many(self.at), iso_many(self.eta),
                                      np.round(self.remaining_km, 3).tolist(), strict=True)]

    def jsonl(self) -> bytes:
        """The records as JSON Lines (the same objects as `records`, written directly)."""
        km = np.asarray(self.remaining_km, np.float64)
        times = np.r_[self.at, self.eta]
        if len(km) and (not np.all((km >= 0) & (km < MAX_KM))
                        or times.min() < MIN_MS or times.max() > MAX_MS):
            return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)
                            for r in self.records())
        data, end = self.ids.quoted()
        out = np.empty(len(km) * LINE_BYTES + int(np.diff(end, prepend=0)[self.shipment].sum()),
                       np.uint8)
        n = _write_lines(data, end, np.asarray(self.shipment, np.int64),
                         np.asarray(self.at, np.int64), np.asarray(self.eta, np.int64),
                         np.rint(km * 1000).astype(np.int64), out)
        return out[:n].tobytes()


@jit.helper
def _put_time(out: np.ndarray, n: int, ms: int) -> int:
    """`iso(ms)` without its `Z` (years 1..9999): the date from the days since 1970 by
    H. Hinnant's `civil_from_days`."""
    days, ms = ms // 86_400_000, ms % 86_400_000
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    n = put_digits(out, n, yoe + era * 400 + (1 if month <= 2 else 0), 4)
    for value, sep in ((month, 45), (doy - (153 * mp + 2) // 5 + 1, 45),  # "-"
                       (ms // 3_600_000, 84), (ms // 60_000 % 60, 58), (ms // 1000 % 60, 58)):
        out[n] = sep  # "-", "-", "T", ":", ":"
        n = put_digits(out, n + 1, value, 2)
    if ms % 1000:
        out[n] = 46  # "."
        n = put_digits(out, n + 1, ms % 1000, 3)
    return n


@numba.njit(cache=True)
def _write_lines(ids: np.ndarray, id_end: np.ndarray, shipment: np.ndarray, at: np.ndarray,
                 eta: np.ndarray, milli_km: np.ndarray, out: np.ndarray) -> int:
    """Write the records' lines into `out`; returns the bytes written."""
    n = 0
    for i in range(len(shipment)):
        n = put(out, n, b'{"shipment_id":')
        s = shipment[i]
        n = put(out, n, ids[0 if s == 0 else id_end[s - 1]:id_end[s]])
        n = put(out, n, b',"at":"')
        n = _put_time(out, n, at[i])
        n = put(out, n, b'Z","eta":"')
        n = _put_time(out, n, eta[i])
        n = put(out, n, b'Z","remaining_km":')
        whole, frac = milli_km[i] // 1000, milli_km[i] % 1000
        n = put_digits(out, n, whole, decimal_digits(whole))
        out[n] = 46  # "."
        out[n + 1] = 48 + frac // 100
        n += 2
        for d in (10, 1):  # the other decimals, without trailing zeros
            if frac % (10 * d) != 0:
                out[n] = 48 + frac // d % 10
                n += 1
        n = put(out, n, b"}\n")
    return n
