"""``simulate(scenario) -> Simulation``: events in arrival order, fences and ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .encode import Bool, Dec, Int, Iso, LineEncoder, Lit, Part, ZInt, iso_strings
from .generate import GPS, MISC, SENSOR, Built, build
from .scenario import Scenario, load_scenario

DEFAULT_BATCH = 10_000


def _encoders(iso: bool, w: int, sw: int) -> tuple[LineEncoder, LineEncoder]:
    def ts() -> list[Part]:
        return ([Lit(b'","ts":"'), Iso("ts"), Lit(b'"')] if iso
                else [Lit(b'","ts":'), Int("ts", 15)])

    gps = LineEncoder([
        Lit(b'{"type":"gps","event_id":"TRK-'), ZInt("num", w), Lit(b"-"), ZInt("seq", sw),
        Lit(b'","device_id":"TRK-'), ZInt("num", w), Lit(b'","shipment_id":"SHP-'),
        ZInt("num", w), *ts(), Lit(b',"lat":'), Dec("lat", 2, 6), Lit(b',"lon":'),
        Dec("lon", 3, 6), Lit(b',"speed_kmh":'), Dec("speed", 3, 1), Lit(b',"heading_deg":'),
        Dec("heading", 3, 1), Lit(b',"accuracy_m":'), Dec("acc", 3, 1), Lit(b"}"),
    ])
    sensor = LineEncoder([
        Lit(b'{"type":"sensor","event_id":"RFR-'), ZInt("num", w), Lit(b"-"), ZInt("seq", sw),
        Lit(b'","device_id":"RFR-'), ZInt("num", w), Lit(b'","shipment_id":"SHP-'),
        ZInt("num", w), *ts(), Lit(b',"temp_c":'), Dec("temp", 3, 2),
        Lit(b',"humidity_pct":'), Dec("hum", 3, 1), Lit(b',"door_open":'), Bool("door"),
        Lit(b',"battery_pct":'), Dec("batt", 3, 1), Lit(b"}"),
    ])
    return gps, sensor


class Simulation:
    """A generated scenario: events in arrival order (lazy rendering), fences, ground truth.

    Iterate it for event dicts, or use ``iter_line_batches``/``iter_byte_blocks`` for the fast
    pre-serialised JSON-lines path. Rendering is deterministic: same scenario -> same bytes.
    """

    def __init__(self, built: Built) -> None:
        self._b = built
        self.scenario: Scenario = built.scenario
        self.world = built.world
        self._iso = built.scenario.ts_format == "iso"
        self._gps_enc, self._sensor_enc = _encoders(self._iso, built.id_digits, built.seq_digits)

    def __len__(self) -> int:
        return int(self._b.codes.size)

    def counts(self) -> dict[str, int]:
        """Events per type (without duplicates), duplicates and total lines."""
        return dict(self._b.truth["counts"])

    def fences(self) -> dict[str, Any]:
        """GeoJSON FeatureCollection of the world's hubs, customers, cold stores, corridors."""
        return self.world.fences()

    def ground_truth(self) -> dict[str, Any]:
        """The injected faults, excursions and true trip times (shared dict: do not mutate)."""
        return self._b.truth

    def write_fences(self, path: str | Path) -> None:
        """Write the fences GeoJSON (one feature per line)."""
        feats = b",\n".join(orjson.dumps(f) for f in self.fences()["features"])
        Path(path).write_bytes(b'{"type":"FeatureCollection","features":[\n' + feats + b"\n]}\n")

    def write_ground_truth(self, path: str | Path) -> None:
        """Write the ground truth JSON."""
        Path(path).write_bytes(orjson.dumps(self._b.truth, option=orjson.OPT_INDENT_2))

    def arrival_ms(self) -> np.ndarray:
        """Arrival time (epoch ms, the engine's receive clock) of every line, in order."""
        return self._b.arrival

    # -- rendering -------------------------------------------------------------------------
    def _table(self, code: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        tab = self._b.gps if code == GPS else self._b.sensor
        return {k: v[rows] for k, v in tab.items()}

    def render_bytes(self, lo: int, hi: int) -> bytes:
        """Lines ``lo..hi`` (arrival order) as newline-terminated JSON lines."""
        codes, rows = self._b.codes[lo:hi], self._b.rows[lo:hi]
        n = codes.size
        encs = ((GPS, self._gps_enc), (SENSOR, self._sensor_enc))
        mat = np.zeros((n, max(e.width for _, e in encs)), dtype=np.uint8)
        for code, enc in encs:
            sel = np.flatnonzero(codes == code)
            if sel.size:
                enc.fill(mat, sel, self._table(code, rows[sel]))
        mask = mat != 0
        packed = mat[mask]
        misc_at = np.flatnonzero(codes == MISC)
        if misc_at.size == 0:
            return packed.tobytes()
        # business events are pre-serialised: splice them in at their positions
        ends = np.cumsum(np.count_nonzero(mask, axis=1))
        data = memoryview(packed)
        lines = self._b.misc_lines
        pieces: list[bytes | memoryview] = []
        prev = 0
        for off, r in zip(ends[misc_at].tolist(), rows[misc_at].tolist(), strict=True):
            pieces.append(data[prev:off])
            pieces.append(lines[r])
            prev = off
        pieces.append(data[prev:])
        return b"".join(pieces)

    def render_dicts(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """Lines ``lo..hi`` (arrival order) as event dicts (equal to the JSON lines)."""
        codes, rows = self._b.codes[lo:hi], self._b.rows[lo:hi]
        out: list[Any] = [None] * codes.size
        ids = self._b.ids
        shp = ids["shp"]
        sw = self._b.seq_digits
        for code in (GPS, SENSOR, MISC):
            sel = np.flatnonzero(codes == code)
            if sel.size == 0:
                continue
            r = rows[sel]
            if code == MISC:
                misc = self._b.misc
                for p, j in zip(sel.tolist(), r.tolist(), strict=True):
                    out[p] = dict(misc[j])
                continue
            t = self._table(code, r)
            ts = iso_strings(t["ts"]) if self._iso else t["ts"].tolist()
            num, seq = t["num"].tolist(), t["seq"].tolist()
            if code == GPS:
                dev = ids["trk"]
                evs = [{"type": "gps", "event_id": f"{dev[n]}-{q:0{sw}d}", "device_id": dev[n],
                        "shipment_id": shp[n], "ts": s, "lat": a, "lon": b, "speed_kmh": c,
                        "heading_deg": d, "accuracy_m": e}
                       for n, q, s, a, b, c, d, e in zip(
                           num, seq, ts, (t["lat"] / 1e6).tolist(), (t["lon"] / 1e6).tolist(),
                           (t["speed"] / 10).tolist(), (t["heading"] / 10).tolist(),
                           (t["acc"] / 10).tolist(), strict=True)]
            else:
                dev = ids["rfr"]
                evs = [{"type": "sensor", "event_id": f"{dev[n]}-{q:0{sw}d}", "device_id": dev[n],
                        "shipment_id": shp[n], "ts": s, "temp_c": a, "humidity_pct": b,
                        "door_open": c, "battery_pct": d}
                       for n, q, s, a, b, c, d in zip(
                           num, seq, ts, (t["temp"] / 100).tolist(), (t["hum"] / 10).tolist(),
                           t["door"].tolist(), (t["batt"] / 10).tolist(), strict=True)]
            for p, ev in zip(sel.tolist(), evs, strict=True):
                out[p] = ev
        return out

    def iter_timed(self, n: int = DEFAULT_BATCH, form: str = "lines"
                   ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield (batch, arrival_ms array); batch is bytes, list[str] lines or list[dict]."""
        if form not in ("bytes", "lines", "dicts"):
            raise ValueError("form must be 'bytes', 'lines' or 'dicts'")
        total = len(self)
        for lo in range(0, total, max(1, n)):
            hi = min(total, lo + max(1, n))
            arr = self._b.arrival[lo:hi]
            if form == "dicts":
                yield self.render_dicts(lo, hi), arr
                continue
            data = self.render_bytes(lo, hi)
            if form == "bytes":
                yield data, arr
            else:
                yield data.decode().split("\n")[:-1], arr

    def iter_byte_blocks(self, n: int = DEFAULT_BATCH) -> Iterator[bytes]:
        """Blocks of ``n`` newline-terminated JSON lines (fastest path)."""
        for data, _ in self.iter_timed(n, "bytes"):
            yield data

    def iter_line_batches(self, n: int = DEFAULT_BATCH) -> Iterator[list[str]]:
        """Batches of JSON lines (str, no trailing newline) in arrival order."""
        for lines, _ in self.iter_timed(n, "lines"):
            yield lines

    def iter_lines(self) -> Iterator[str]:
        """JSON lines one by one, in arrival order."""
        for batch in self.iter_line_batches():
            yield from batch

    def iter_batches(self, n: int = DEFAULT_BATCH) -> Iterator[list[dict[str, Any]]]:
        """Batches of event dicts in arrival order."""
        for evs, _ in self.iter_timed(n, "dicts"):
            yield evs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.iter_batches():
            yield from batch

    def write_jsonl(self, path: str | Path, n: int = 50_000) -> int:
        """Write every line to a JSON Lines file; returns the number of lines."""
        with open(path, "wb", buffering=1 << 20) as f:
            for block in self.iter_byte_blocks(n):
                f.write(block)
        return len(self)


def simulate(scenario: Scenario | str | Path | None = None, **overrides: Any) -> Simulation:
    """Generate a scenario (object, preset name/path, or None for the default) -> Simulation.

    Keyword overrides replace scenario fields as given (None included, e.g. to clear a count).
    """
    if scenario is None or isinstance(scenario, str | Path):
        scenario = load_scenario(scenario or "default")
    scn = scenario.replace(**overrides) if overrides else scenario
    return Simulation(build(scn))
