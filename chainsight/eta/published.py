"""ETAs as published: one batch of a prediction run, kept as columns (dicts for thousands of
ETAs would cost more than making them) and turned into ETA.jsonl's records when written.

ETA.jsonl's lines are written by a Numba kernel into one byte buffer: the times formatted by
NumPy, the shipment ids JSON-encoded once each, and `remaining_km` (rounded to metres) as the
shortest decimal that reads back as the same number, as `repr` writes it."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import orjson

from chainsight.contract.times import MAX_MS, MIN_MS, iso_many

ISO_MS = 23  # "YYYY-MM-DDTHH:MM:SS.mmm"; 19 bytes without the milliseconds
MAX_KM = 1e12  # beyond this (or NaN), remaining_km is written by `repr`
LINE_BYTES = 128  # at most, without the shipment id


class Etas(NamedTuple):
    """`{"shipment_id", "at", "eta", "remaining_km"}` records, as columns."""

    names: list[str]  # shipment ids by dense id (the engine's registry, which only grows)
    shipment: np.ndarray  # dense ids
    at: np.ndarray  # epoch ms
    eta: np.ndarray  # epoch ms
    remaining_km: np.ndarray

    @property
    def shipment_ids(self) -> list[str]:
        names = self.names
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
        ids, which = np.unique(self.shipment, return_inverse=True)
        names = [orjson.dumps(self.names[s]) for s in ids.tolist()]
        name_end = np.cumsum([len(n) for n in names], dtype=np.int64)
        text = times.astype("datetime64[ms]").astype(f"S{ISO_MS}").view(np.uint8)
        name_bytes = np.diff(name_end, prepend=0)[which].sum()
        out = np.empty(len(km) * LINE_BYTES + int(name_bytes), np.uint8)
        n = _write_lines(np.frombuffer(b"".join(names), np.uint8), name_end,
                         which.astype(np.int64), text.reshape(-1, ISO_MS),
                         times % 1000 != 0, np.rint(km * 1000).astype(np.int64), out)
        return out[:n].tobytes()


@numba.njit(cache=True)
def _put(out: np.ndarray, n: int, text: bytes) -> int:
    for c in text:
        out[n] = c
        n += 1
    return n


@numba.njit(cache=True)
def _put_time(out: np.ndarray, n: int, times: np.ndarray, has_ms: np.ndarray, t: int) -> int:
    for k in range(ISO_MS if has_ms[t] else ISO_MS - 4):
        out[n] = times[t, k]
        n += 1
    return n


@numba.njit(cache=True)
def _write_lines(names: np.ndarray, name_end: np.ndarray, which: np.ndarray,
                 times: np.ndarray, has_ms: np.ndarray, milli_km: np.ndarray,
                 out: np.ndarray) -> int:
    """Write the records' lines into `out`; returns the bytes written. `times`: the `at`
    times' ISO text, then the `eta` times'."""
    rows = len(which)
    n = 0
    for i in range(rows):
        n = _put(out, n, b'{"shipment_id":')
        j = which[i]
        for k in range(0 if j == 0 else name_end[j - 1], name_end[j]):
            out[n] = names[k]
            n += 1
        n = _put(out, n, b',"at":"')
        n = _put_time(out, n, times, has_ms, i)
        n = _put(out, n, b'Z","eta":"')
        n = _put_time(out, n, times, has_ms, rows + i)
        n = _put(out, n, b'Z","remaining_km":')
        whole, frac = milli_km[i] // 1000, milli_km[i] % 1000
        digits = 1
        while 10 ** digits <= whole:
            digits += 1
        for d in range(digits - 1, -1, -1):
            out[n] = 48 + whole // 10 ** d % 10
            n += 1
        out[n] = 46  # "."
        out[n + 1] = 48 + frac // 100
        n += 2
        for d in (10, 1):  # the other decimals, without trailing zeros
            if frac % (10 * d) != 0:
                out[n] = 48 + frac // d % 10
                n += 1
        n = _put(out, n, b"}\n")
    return n
