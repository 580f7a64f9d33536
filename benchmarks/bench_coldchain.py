"""Cold-chain rules over 10,000,000 readings of 10,000 shipments, against pure Python.

Run: .venv/bin/python benchmarks/bench_coldchain.py [--readings N] [--shipments N]
     [--chunk N] [--baseline-shipments N] [--faults X] [--seed S]

Readings are built as NumPy arrays: one reefer sensor per shipment reporting about every minute,
temperatures inside the profile with slow drift and noise, plus injected faults: per sensor
over the ~17 h window 0.3 temperature excursions (3..90 min, warm or cold), 0.2 door openings
on the road (1..12 min), 0.1 silent gaps (11..40 min), and 0.5 humidity excursions where it is
measured; `--faults` scales these rates. Alert transitions cost the same Python in both
implementations, so the ratio falls as faults rise: the output says how many there were.
Profiles: the built-ins, `fresh_produce` (humidity range) and a user-defined `vaccines`
(2..8 °C, MKT alerts from 4 h).

The engine's rules (advisor, continuous, humidity, cumulative, MKT, door, silence) run through
their batch path (`on_rows` per chunk of readings, then `on_clock` and the alert book's clock),
as the engine drives them, JIT compilation excluded. The pure-Python baseline implements the
same rules with a per-reading loop over Python lists and dicts; it is timed on the readings of
the first `--baseline-shipments` shipments (whole trips) and scaled. Two comparisons:
- rule evaluation: both feed a book that only records the conditions (open/resolve calls);
- end to end: both feed the engine's AlertBook (lifecycle timers, records, hash-chained audit),
  whose Python cost per transition is the same for both and so narrows the ratio.
Both implementations give the same output on the subset, which is checked. Each timing is the
best of `--repeat` runs (the machine may be shared).
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from chainsight.alerts.book import AlertBook  # noqa: E402
from chainsight.config import Profile, load_profiles  # noqa: E402
from chainsight.contract.events import SENSOR  # noqa: E402
from chainsight.contract.times import iso  # noqa: E402
from chainsight.engine.core import Engine  # noqa: E402
from chainsight.engine.state import NO_TS, State  # noqa: E402
from chainsight.ingest.rows import Rows  # noqa: E402
from chainsight.rules.base import open_excursion, resolve_excursion  # noqa: E402
from chainsight.rules.excursion import ExcursionRule  # noqa: E402
from chainsight.rules.humidity import HumidityRule  # noqa: E402
from chainsight.rules.mkt import H_OVER_R, KELVIN  # noqa: E402

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
# faults per sensor over the window (~17 h): temperature and humidity excursions, door openings
# on the road, silent gaps
EXCURSIONS, HUMID, DOORS, GAPS = 0.3, 0.5, 0.2, 0.1
PROFILE_MIX = {"pharma_2_8": 0.45, "frozen": 0.15, "chilled_food": 0.15,
               "fresh_produce": 0.1, "vaccines": 0.15}


def profiles() -> dict[str, Profile]:
    vaccines = Profile(name="vaccines", min_c=2, max_c=8, excursion_min=15,
                       cumulative_budget_min=60, door_open_max_min=5, mkt_min_h=4)
    return {**load_profiles(), "vaccines": vaccines}


def _bumps(rng, n_ship, per, rate, length, size):
    """A (n_ship, per) array: rectangles of random height over random runs of readings."""
    count = rng.poisson(rate, n_ship)
    ship = np.repeat(np.arange(n_ship), count)
    start = rng.integers(0, per, ship.size)
    end = np.minimum(start + rng.integers(*length, ship.size), per)
    diff = np.zeros((n_ship, per + 1))
    height = size(ship.size)
    np.add.at(diff, (ship, start), height)
    np.add.at(diff, (ship, end), -height)
    return np.cumsum(diff[:, :per], axis=1)


def make_fleet(n_ship: int, n_readings: int, seed: int, faults: float = 1.0):
    """Per-shipment profile names and (ship, ts, temp, humidity, door) arrays in ts order.

    Every sensor reports once a minute (a few seconds of jitter) over the whole window, except
    in its silent gaps; the first `n_readings` readings in event time are kept."""
    rng = np.random.default_rng(seed)
    per = n_readings // n_ship + 60  # room for the gaps
    table = profiles()
    names = rng.choice(list(PROFILE_MIX), n_ship, p=list(PROFILE_MIX.values()))
    lo = np.array([table[p].min_c for p in names])[:, None]
    hi = np.array([table[p].max_c for p in names])[:, None]
    span = hi - lo
    k = np.arange(per)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n_ship, 1))
    temp = (lo + hi) / 2 + 0.25 * span * np.sin(k / rng.uniform(60, 240, (n_ship, 1)) + phase)
    temp = np.clip(temp + rng.normal(0, 0.15, (n_ship, per)), lo + 0.2, hi - 0.2)
    # excursions: 3..90 minutes, beyond the range by 0.5..4 °C, one in five cold
    bump = _bumps(rng, n_ship, per, EXCURSIONS * faults, (3, 90),
                  lambda m: rng.uniform(0.5, 4, m) * np.where(rng.random(m) < 0.2, -1, 1))
    temp += np.where(bump > 0, span / 2, np.where(bump < 0, -span / 2, 0)) + bump
    humid = np.where(names[:, None] == "fresh_produce", 90 + rng.normal(0, 1.5, (n_ship, per)),
                     np.nan)
    humid += _bumps(rng, n_ship, per, HUMID * faults, (5, 60),
                    lambda m: rng.choice([-10.0, 8.0], m))
    door = _bumps(rng, n_ship, per, DOORS * faults, (1, 12), lambda m: np.ones(m))
    door = (door > 0).astype(np.int8)
    silent = _bumps(rng, n_ship, per, GAPS * faults, (11, 40), lambda m: np.ones(m)) > 0
    ts = T0 + rng.integers(0, MIN, (n_ship, 1)) + k * MIN + rng.integers(-3000, 3001, (n_ship, per))
    ship = np.broadcast_to(np.arange(n_ship, dtype=np.int32)[:, None], (n_ship, per))
    keep = ~silent.ravel()
    order = np.argsort(ts.ravel()[keep], kind="stable")[:n_readings]
    return names, *(a.ravel()[keep][order] for a in (
        ship, ts, np.round(temp, 2), np.round(humid, 1), door))


def to_rows(ship, ts, temp, humid, door) -> Rows:
    n = len(ts)
    nan, zeros = np.full(n, np.nan), np.zeros(n, np.int64)
    return Rows(kind=np.full(n, SENSOR, np.int8), ts=ts, seq=zeros, key=zeros, device=ship,
                shipment=ship, lat=nan, lon=nan, temp_c=temp, humidity=humid, door=door,
                accuracy=nan)


class ConditionLog:
    """A book that only records what the rules report: (kind, rule, shipment, device, at, what)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def open(self, kind, shipment, device, fence, at, severity, details, *, rule="",
             started=None) -> None:
        self.calls.append((kind, rule, shipment, device, at, "open"))

    def resolve(self, kind, shipment, device, fence, at, details=None, *, rule="") -> None:
        self.calls.append((kind, rule, shipment, device, at, "resolve"))

    def on_clock(self, clock) -> None:
        pass

    def collect(self) -> tuple[list, list, list]:
        """((at, condition) pairs, no notifications, no audit): AlertBook.collect's shape."""
        calls, self.calls = self.calls, []
        return [(call[4], call) for call in calls], [], []


def start_trips(names, book=None) -> Engine:
    """An engine whose shipments S0.. (dense id i, sensor T<i>) are in transit."""
    eng = Engine(profiles=profiles())
    eng.process([orjson.dumps({"type": "order", "order_id": f"O{i}", "shipment_id": f"S{i}",
                               "ts": T0 - 60 * MIN, "status": "in_transit",
                               "product_profile": str(p), "device_ids": [f"T{i}"]})
                 for i, p in enumerate(names)], now=T0)
    eng.flush()
    if book is not None:
        eng.settled.book = book
    assert eng.state.shipments.names[:3] == ["S0", "S1", "S2"]
    assert eng.state.devices.names[:3] == ["T0", "T1", "T2"]
    return eng


def run_rules(eng: Engine, rows: Rows, chunk: int,
              out: Callable[[list], object] | None = None) -> None:
    """The rules' batch path, chunk by chunk, as the engine's settled pipeline drives it;
    records go to `out`."""
    st, book = eng.settled.state, eng.settled.book
    for lo in range(0, len(rows), chunk):
        seg = Rows(*(getattr(rows, c)[lo:lo + chunk] for c in Rows.COLUMNS))
        for rule in eng.settled.rules:
            rule.on_rows(seg, st, book)
        st.clock = max(st.clock, int(seg.ts[-1]))
        for rule in eng.settled.rules:
            rule.on_clock(st.clock, st, book)
        book.on_clock(st.clock)
        alerts, notes, _ = book.collect()
        records = [record for _, record in alerts] + notes
        if out is not None:
            out(records)


class PurePython:
    """The same rules, one reading at a time, over Python lists and dicts."""

    def __init__(self, state: State, book: AlertBook, table: dict[str, Profile],
                 silent_ms: int) -> None:
        self.state, self.book, self.silent_ms = state, book, silent_ms
        self.humidity_details = HumidityRule()._details
        self.temp_details = ExcursionRule()._details
        self.limits = {}
        for s in range(len(state.shipments)):
            p = table[state.info[s].profile]
            self.limits[s] = (float(p.min_c), float(p.max_c), p.excursion_min * MIN,
                              math.nan if p.humidity_min is None else float(p.humidity_min),
                              math.nan if p.humidity_max is None else float(p.humidity_max),
                              -1 if p.cumulative_budget_min is None else
                              p.cumulative_budget_min * MIN,
                              -1 if p.door_open_max_min is None else p.door_open_max_min * MIN,
                              -1 if p.mkt_min_h is None else p.mkt_min_h * 60 * MIN)
        self.armed_at = T0 - 60 * MIN  # the orders put every shipment in transit then
        self.runs = {"continuous": {}, "humidity": {}}  # s -> [start, min, max, open, device]
        self.cum = {}  # s -> [run_start, spent, first, min, max, alerted]
        self.mkt = {}  # s -> [last_ts, last_c, weight, weighted, first, min, max, out, device]
        self.door = {}  # d -> [since, shipment, alarmed, tmax]
        self.sensor = {}  # d -> [last, shipment, silent]

    def on_rows(self, ship, dev, ts, temp, humid, door) -> None:
        for i in range(len(ts)):
            s, d, t = ship[i], dev[i], ts[i]
            lim = self.limits[s]
            if temp[i] == temp[i]:
                self._run("continuous", s, d, t, temp[i], lim[0], lim[1], lim[2])
                self._cumulative(s, d, t, temp[i], lim)
                self._mkt(s, d, t, temp[i], lim)
            if humid[i] == humid[i]:
                self._run("humidity", s, d, t, humid[i], lim[3], lim[4], lim[2])
            self._door(s, d, t, door[i], temp[i], lim)
            self._silence(s, d, t)

    def _run(self, rule, s, d, t, v, lo, hi, min_ms) -> None:
        r = self.runs[rule].setdefault(s, [NO_TS, 0.0, 0.0, False, -1])
        if v < lo or v > hi:
            if r[0] == NO_TS:
                r[0], r[1], r[2] = t, v, v
            else:
                r[1], r[2] = min(r[1], v), max(r[2], v)
            if not r[3] and t - r[0] >= min_ms:
                r[3], r[4] = True, d
                self._excursion(rule, True, s, r, t, lo, hi)
        elif r[0] != NO_TS:
            if r[3]:
                r[3] = False
                self._excursion(rule, False, s, r, t, lo, hi)
            r[0] = NO_TS

    def _excursion(self, rule, opening, s, r, t, lo, hi) -> None:
        details = (self.temp_details if rule == "continuous" else self.humidity_details)(
            lo, hi, r[0], r[1], r[2], t)
        if opening:
            details = {"started_at": iso(r[0]), **details}
            open_excursion(self.book, self.state, None, rule, s, r[4], t, r[0], details)
        else:
            resolve_excursion(self.book, self.state, rule, s, r[4], t, details)

    def _cumulative(self, s, d, t, v, lim) -> None:
        if lim[5] < 0:
            return
        c = self.cum.setdefault(s, [NO_TS, 0, NO_TS, math.nan, math.nan, False])
        if v < lim[0] or v > lim[1]:
            if c[0] == NO_TS:
                c[0] = t
                if c[2] == NO_TS:
                    c[2] = t
            c[3] = v if c[3] != c[3] or v < c[3] else c[3]
            c[4] = v if c[4] != c[4] or v > c[4] else c[4]
            total = c[1] + max(t - c[0], 0)
        else:
            if c[0] != NO_TS:
                c[1] += max(t - c[0], 0)
                c[0] = NO_TS
            total = c[1]
        if not c[5] and total > lim[5]:
            c[5] = True
            details = {"started_at": iso(c[2]), "cumulative_min": round(total / MIN, 3),
                       "budget_min": round(lim[5] / MIN, 3),
                       "duration_min": round(total / MIN, 3)}
            if c[4] > lim[1]:
                details.update(max_c=c[4], limit_c=float(lim[1]))
            if c[3] < lim[0]:
                details["min_c"] = c[3]
                details.setdefault("limit_c", float(lim[0]))
            open_excursion(self.book, self.state, None, "cumulative", s, d, t, t, details)

    def _mkt(self, s, d, t, v, lim) -> None:
        m = self.mkt.setdefault(s, [NO_TS, 0.0, 0.0, 0.0, NO_TS, math.nan, math.nan, False, -1])
        if m[0] == NO_TS:
            m[4] = t
        elif t > m[0]:
            w = float(t - m[0])
            m[2] += w
            m[3] += w * math.exp(-H_OVER_R / (m[1] + KELVIN))
        elif t < m[0]:
            return
        m[0], m[1] = t, v
        m[5] = v if m[5] != m[5] or v < m[5] else m[5]
        m[6] = v if m[6] != m[6] or v > m[6] else m[6]
        if lim[7] < 0 or m[2] <= 0 or m[2] < lim[7]:
            return
        mkt = H_OVER_R / -math.log(m[3] / m[2]) - KELVIN
        outside = mkt < lim[0] or mkt > lim[1]
        if outside == m[7]:
            return
        m[7] = outside
        details = {"mkt_c": round(mkt, 3), "started_at": iso(m[4]),
                   "duration_min": round(m[2] / MIN, 3)}
        if outside:
            hot = mkt > lim[1]
            details["max_c" if hot else "min_c"] = m[6] if hot else m[5]
            details["limit_c"] = float(lim[1] if hot else lim[0])
            m[8] = d
            open_excursion(self.book, self.state, None, "mkt", s, d, t, t, details)
        else:
            resolve_excursion(self.book, self.state, "mkt", s, m[8], t, details)

    def _door(self, s, d, t, is_open, v, lim) -> None:
        g = self.door.setdefault(d, [NO_TS, s, False, math.nan])
        g[1] = s
        if is_open == 1 and g[0] == NO_TS:
            g[0], g[3] = t, math.nan
        if g[0] == NO_TS:
            return
        start = max(g[0], self.armed_at)
        over = lim[6] >= 0 and t - start > lim[6]
        if is_open == 0:
            if g[2]:
                g[2] = False
                self._door_resolve(s, d, start, t)
            elif over:
                self._door_open(s, d, start, g[3], lim)
                self._door_resolve(s, d, start, t)
            g[0] = NO_TS
        elif over and not g[2]:
            g[2] = True
            self._door_open(s, d, start, g[3], lim)
        if v == v and (g[3] != g[3] or v > g[3]):
            g[3] = v

    def _door_open(self, s, d, start, tmax, lim) -> None:
        details = {"started_at": iso(start), "door_limit_min": lim[6] / MIN,
                   "duration_min": lim[6] / MIN}
        if tmax == tmax:
            details.update(max_c=tmax, limit_c=float(lim[1]))
        open_excursion(self.book, self.state, None, "door_open", s, d, start + lim[6], start,
                       details)

    def _door_resolve(self, s, d, start, t) -> None:
        resolve_excursion(self.book, self.state, "door_open", s, d, t,
                          {"duration_min": round((t - start) / MIN, 3)})

    def _silence(self, s, d, t) -> None:
        g = self.sensor.setdefault(d, [NO_TS, -1, False])
        if g[2]:
            g[2] = False
            self._silence_resolve(g[1], d, t)
        elif g[0] != NO_TS and t - g[0] > self.silent_ms and g[1] >= 0:
            self._silence_open(g[1], d, g[0])
            self._silence_resolve(g[1], d, t)
        g[0], g[1] = max(g[0], t), s

    def _silence_open(self, s, d, last) -> None:
        self.book.open("sensor_silent", self.state.shipments.names[s],
                       self.state.devices.names[d], None, last + self.silent_ms, "warning",
                       {"last_reading_at": iso(last), "silent_min": self.silent_ms / MIN})

    def _silence_resolve(self, s, d, t) -> None:
        self.book.resolve("sensor_silent", self.state.shipments.names[s],
                          self.state.devices.names[d], None, t, {"resumed_at": iso(t)})

    def on_clock(self, clock) -> None:
        for d, g in self.door.items():
            start = max(g[0], self.armed_at)
            limit = self.limits[g[1]][6]
            if g[0] != NO_TS and not g[2] and limit >= 0 and clock - start > limit:
                g[2] = True
                self._door_open(g[1], d, start, g[3], self.limits[g[1]])
        for d, g in self.sensor.items():
            if g[0] != NO_TS and not g[2] and clock - g[0] > self.silent_ms:
                g[2] = True
                self._silence_open(g[1], d, g[0])
        self.book.on_clock(clock)


def run_python(eng: Engine, rows: Rows, chunk: int,
               out: Callable[[list], object] | None = None) -> None:
    py = PurePython(eng.state, eng.book, eng.profiles, eng.settings.sensor_silent_ms)
    for lo in range(0, len(rows), chunk):
        hi = lo + chunk
        py.on_rows(*(getattr(rows, c)[lo:hi].tolist() for c in (
            "shipment", "device", "ts", "temp_c", "humidity", "door")))
        eng.state.clock = max(eng.state.clock, int(rows.ts[min(hi, len(rows)) - 1]))
        py.on_clock(eng.state.clock)
        alerts, notes, _ = eng.book.collect()
        records = [record for _, record in alerts] + notes
        if out is not None:
            out(records)


def best_of(repeat: int, names, run, rows: Rows, chunk: int, book: type | None) -> float:
    """Seconds of the fastest of `repeat` runs, each on a fresh engine (set up untimed)."""
    best = float("inf")
    for _ in range(repeat):
        eng = start_trips(names, None if book is None else book())
        started = time.perf_counter()
        run(eng, rows, chunk)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=10_000_000)
    ap.add_argument("--shipments", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--baseline-shipments", type=int, default=500)
    ap.add_argument("--faults", type=float, default=1.0, help="scale of the fault rates")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    t = time.perf_counter()
    names, ship, ts, temp, humid, door = make_fleet(args.shipments, args.readings, args.seed,
                                                    args.faults)
    rows = to_rows(ship, ts, temp, humid, door)
    print(f"built {len(rows):,} readings of {args.shipments:,} shipments "
          f"({(ts[-1] - ts[0]) / 3_600_000:.1f} h of event time) in "
          f"{time.perf_counter() - t:.1f} s")

    first = names[:args.baseline_shipments]
    sub = ship < args.baseline_shipments
    sub_rows = to_rows(ship[sub], ts[sub], temp[sub], humid[sub], door[sub])
    run_rules(start_trips(first), sub_rows, args.chunk)  # JIT compile (or load from the cache)

    opened: Counter[str] = Counter()
    transitions = 0

    def count(records: list[dict]) -> None:
        nonlocal transitions
        transitions += len(records)
        opened.update(r["details"].get("rule", r["kind"]) for r in records
                      if r["details"]["transition"] == "opened")

    run_rules(start_trips(names), rows, args.chunk, count)
    print(f"{transitions:,} alert transitions; alerts opened: {dict(opened)}")
    n_sub = len(sub_rows)
    print(f"pure Python timed on {n_sub:,} readings: the first {args.baseline_shipments} "
          f"shipments' whole trips")
    for label, book in (("rule evaluation", ConditionLog), ("end to end", None)):
        fast = best_of(args.repeat, names, run_rules, rows, args.chunk, book)
        slow = best_of(args.repeat, first, run_python, sub_rows, args.chunk, book)
        outputs = []
        for run in (run_rules, run_python):
            got: list = []
            run(start_trips(first, None if book is None else book()), sub_rows, args.chunk,
                got.extend)
            outputs.append(sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in got))
        same = outputs[0] == outputs[1]
        ratio = (len(rows) / fast) / (n_sub / slow)
        print(f"{label}: numba {len(rows) / fast:,.0f} readings/s ({len(rows):,} in {fast:.2f} s)"
              f", pure Python {n_sub / slow:,.0f} readings/s (scaled to {len(rows):,}: about "
              f"{slow * len(rows) / n_sub:,.0f} s)\n  ratio {ratio:,.0f}x; same output on the "
              f"subset: {same} ({len(outputs[0]):,} items)")
        if not same:
            raise SystemExit(f"{label}: the two implementations disagree")


if __name__ == "__main__":
    main()
