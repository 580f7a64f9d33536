"""Geofence enter / exit / dwell transitions per device (contract: "geofence_enter /
geofence_exit: at the first GPS fix inside / outside a fence, per device and fence").

State is one *slot* per (device, fence) pair that is inside, or is on its way in (hysteresis);
each device's slots form a linked list. Dwell deadlines wait in a min-heap so that they fire
as event time passes, with or without a new fix from that device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from chainsight import jit

from .fences import FenceSet

DWELL, EXIT, ENTER = 0, 1, 2  # also the order of transitions at one fix
KIND_NAMES = ("dwell_exceeded", "geofence_exit", "geofence_enter")
# slot columns
DEV, FENCE, INSIDE, RUN, RUN_TS, ENTERED, FIRED, NEXT, VISIT = range(9)
# meta: free-list head, slots used, heap size, visits so far
FREE, USED, HEAP, VISITS = range(4)


class FenceTransition(NamedTuple):
    """One geofence transition. fix_index is the index of the fix in the update() arrays
    (for dwell: the fix whose time passed the deadline), or -1 from advance()."""

    kind: str  # 'geofence_enter' | 'geofence_exit' | 'dwell_exceeded'
    fix_index: int
    device: int
    fence_id: str
    ts_ms: int  # event time of the transition
    details: dict


class FenceTracker:
    """Per-device fence membership over a stream of fixes in processing order.

    Devices are dense non-negative ints (indexes into the caller's device table).
    Hysteresis, off by default: a transition counts once `min_fixes` consecutive fixes,
    spanning at least `min_seconds`, lie at least `min_metres` inside the fence (to enter)
    or outside it (to exit); fixes in the band between change nothing and restart the count.
    With hysteresis the transition's time is that of the fix that confirmed it.
    `dwell_exceeded` fires once per visit when event time reaches entered + dwell_max_min.
    """

    def __init__(self, fences: FenceSet, min_fixes: int = 1, min_seconds: float = 0,
                 min_metres: float = 0) -> None:
        if min_fixes < 1 or min_seconds < 0 or min_metres < 0:
            raise ValueError("min_fixes must be >= 1, min_seconds and min_metres >= 0")
        self.fences = fences
        self.min_fixes = int(min_fixes)
        self.min_ms = int(round(min_seconds * 1000))
        self.min_metres = float(min_metres)
        self._dwell_ms = _dwell_ms(fences)
        self._slots = np.full((64, 9), -1, np.int64)
        self._head = np.full(0, -1, np.int64)
        self._heap = np.zeros((64, 3), np.int64)
        self._meta = np.array([-1, 0, 0, 0], np.int64)

    def update(self, device: np.ndarray, ts_ms: np.ndarray, lon: np.ndarray, lat: np.ndarray
               ) -> list[FenceTransition]:
        """Process fixes (in processing order); returns their transitions in that order."""
        device = np.ascontiguousarray(device, np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, np.int64)
        if not device.size == ts_ms.size == np.size(lon) == np.size(lat):
            raise ValueError("device, ts_ms, lon and lat must have the same length")
        if device.size == 0:
            return []
        if device.min() < 0:
            raise ValueError("device ids must be non-negative")
        if self.min_metres > 0:
            dp, df = self.fences.contains(lon, lat, -self.min_metres)
            gp, gf = self.fences.contains(lon, lat, self.min_metres)
        else:
            dp, df = gp, gf = self.fences.contains(lon, lat)
        self._reserve(int(device.max()) + 1, dp.size)
        out = np.empty((3 * dp.size + self._meta[USED] + self._meta[HEAP] + 1, 6), np.int64)
        n = _update(device, ts_ms, dp, df, gp, gf, self.min_fixes, self.min_ms, self._dwell_ms,
                    self._slots, self._head, self._heap, self._meta, out)
        return self._transitions(out[:n])

    def advance(self, now_ms: int) -> list[FenceTransition]:
        """Fire the dwell deadlines reached by event time `now_ms` (no new fix needed)."""
        out = np.empty((self._meta[HEAP] + 1, 6), np.int64)
        n = _fire_dwell(int(now_ms), -1, self._slots, self._heap, self._meta, out, 0)
        return self._transitions(out[:n])

    def inside(self, device: int) -> list[str]:
        """Ids of the fences the device is currently inside (in fence order)."""
        found = []
        s = self._head[device] if 0 <= device < self._head.size else -1
        while s >= 0:
            if self._slots[s, INSIDE] == 1:
                found.append(int(self._slots[s, FENCE]))
            s = self._slots[s, NEXT]
        return [self.fences.ids[f] for f in sorted(found)]

    def replace_fences(self, new: FenceSet) -> None:
        """Switch to a new fence set. State carries over for fences whose id and geometry are
        unchanged (with the new dwell limit); state for other fences is dropped silently."""
        remap = np.full(len(self.fences) + 1, -1, np.int64)  # last entry: free slots
        for j, fid in enumerate(self.fences.ids):
            k = new.find(fid)
            if k is not None and new.geometry_keys[k] == self.fences.geometry_keys[j]:
                remap[j] = k
        live = self._live()
        live[:, FENCE] = remap[live[:, FENCE]]
        self.fences = new
        self._dwell_ms = _dwell_ms(new)
        self._rebuild(live[live[:, FENCE] >= 0], int(self._meta[VISITS]))

    def copy_devices(self, src: FenceTracker, devices: np.ndarray) -> None:
        """Make the state of these devices (dense ids) equal to `src`'s, a tracker with the
        same fences; other devices' state stays. The visit counter becomes the larger one."""
        if src.fences.ids != self.fences.ids:
            raise ValueError("copy_devices needs trackers with the same fences")
        mine, theirs = self._live(), src._live()
        live = np.concatenate([mine[~np.isin(mine[:, DEV], devices)],
                               theirs[np.isin(theirs[:, DEV], devices)]])
        self._reserve(int(devices.max(initial=-1)) + 1, 0)
        self._rebuild(live, max(int(self._meta[VISITS]), int(src._meta[VISITS])))

    def _live(self) -> np.ndarray:
        """A copy of the slots in use (those of a device)."""
        live = self._slots[:self._meta[USED]]
        return live[live[:, DEV] >= 0]

    def _rebuild(self, live: np.ndarray, visits: int) -> None:
        """Make `live` (slot rows of the current fences) the slots: the devices' lists linked
        anew, and the dwell heap rebuilt from the visits still waiting for their deadline."""
        live = live[np.argsort(live[:, DEV], kind="stable")]
        n = len(live)
        same_next = np.append(live[1:, DEV] == live[:-1, DEV], False)
        live[:, NEXT] = np.where(same_next, np.arange(1, n + 1), -1)
        self._head[:] = -1
        first = np.flatnonzero(np.append(True, ~same_next[:-1])) if n else np.zeros(0, int)
        self._head[live[first, DEV]] = first
        self._slots = np.full((max(64, 2 * n), 9), -1, np.int64)
        self._slots[:n] = live
        limit = self._dwell_ms[live[:, FENCE]]
        wait = np.flatnonzero((live[:, INSIDE] == 1) & (live[:, FIRED] == 0) & (limit >= 0))
        heap = np.column_stack([live[wait, ENTERED] + limit[wait], wait, live[wait, VISIT]])
        heap = heap[np.lexsort((heap[:, 2], heap[:, 0]))]  # sorted is a valid heap
        self._heap = np.zeros((max(64, 2 * len(heap)), 3), np.int64)
        self._heap[:len(heap)] = heap
        self._meta[:] = [-1, n, len(heap), visits]

    def dump_state(self) -> dict:
        """The state arrays, and the fences their fence numbers refer to."""
        return {"fences": self.fences.ids, "geometry": self.fences.geometry_keys,
                "slots": self._slots, "head": self._head, "heap": self._heap, "meta": self._meta}

    def load_state(self, data: dict) -> None:
        """State of a tracker with the same fences, or (when the fences differ) the state of
        the fences left unchanged, as after `replace_fences`."""
        self._slots = np.asarray(data["slots"], dtype=np.int64).reshape(-1, 9)
        self._head = np.asarray(data["head"], dtype=np.int64)
        self._heap = np.asarray(data["heap"], dtype=np.int64).reshape(-1, 3)
        self._meta = np.asarray(data["meta"], dtype=np.int64).reshape(4)
        fences = self.fences
        if list(data["fences"]) != fences.ids or list(data["geometry"]) != fences.geometry_keys:
            self.fences = _SavedFences(list(data["fences"]), list(data["geometry"]))
            self.replace_fences(fences)

    def _reserve(self, n_devices: int, n_pairs: int) -> None:
        """Grow the state arrays so one update cannot overflow them."""
        if n_devices > self._head.size:
            self._head = np.append(self._head, np.full(n_devices - self._head.size, -1))
        need = self._meta[USED] + n_pairs
        if need > len(self._slots):
            grown = np.full((2 * need, 9), -1, np.int64)
            grown[:len(self._slots)] = self._slots
            self._slots = grown
        need = self._meta[HEAP] + n_pairs
        if need > len(self._heap):
            grown = np.zeros((2 * need, 3), np.int64)
            grown[:len(self._heap)] = self._heap
            self._heap = grown

    def _transitions(self, rows: np.ndarray) -> list[FenceTransition]:
        fs = self.fences
        result = []
        for fix, dev, f, kind, ts, entered in rows[np.lexsort(rows[:, [2, 4, 3, 0]].T)].tolist():
            details = {"fence_name": fs.names[f], "fence_kind": fs.kinds[f]}
            if kind != ENTER:
                details["entered_at_ms"] = int(entered)
                details["dwell_min"] = float(ts - entered) / 60000
            if kind == DWELL:
                details["dwell_max_min"] = float(fs.dwell_max_min[f])
            result.append(FenceTransition(KIND_NAMES[kind], int(fix), int(dev), fs.ids[f],
                                          int(ts), details))
        return result


@dataclass(frozen=True)
class _SavedFences:
    """What `replace_fences` needs of the fences a snapshot was taken with."""

    ids: list[str]
    geometry_keys: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def _dwell_ms(fences: FenceSet) -> np.ndarray:
    d = fences.dwell_max_min
    return np.where(np.isnan(d), -1, np.round(np.nan_to_num(d) * 60000)).astype(np.int64)


@njit(cache=True)
def _update(device: np.ndarray, ts: np.ndarray, dp: np.ndarray, df: np.ndarray, gp: np.ndarray,
            gf: np.ndarray, min_fixes: int, min_ms: int, dwell_ms: np.ndarray, slots: np.ndarray,
            head: np.ndarray, heap: np.ndarray, meta: np.ndarray, out: np.ndarray) -> int:
    """Membership update over the fixes. (dp, df): (fix, fence) pairs deep inside (the fence
    shrunk by the hysteresis distance); (gp, gf): pairs inside the grown fence. Both sorted.
    Writes rows (fix, device, fence, kind, ts, entered_ts) to out; returns their number."""
    n = 0
    a = b = 0
    for i in range(device.size):
        t, d = ts[i], device[i]
        n = _fire_dwell(t, i, slots, heap, meta, out, n)
        while a < dp.size and dp[a] < i:
            a += 1
        a0 = a
        while a < dp.size and dp[a] == i:
            a += 1
        while b < gp.size and gp[b] < i:
            b += 1
        b0 = b
        while b < gp.size and gp[b] == i:
            b += 1
        prev, s = -1, head[d]
        while s >= 0:  # the device's current slots
            nxt, f = slots[s, NEXT], slots[s, FENCE]
            keep = True
            if slots[s, INSIDE] == 1:
                if _has(gf, b0, b, f):  # not clearly outside
                    slots[s, RUN] = 0
                elif _step(slots, s, t, min_fixes, min_ms):
                    n = _emit(out, n, i, d, f, EXIT, t, slots[s, ENTERED])
                    keep = False
            elif not _has(df, a0, a, f):  # a pending enter that did not hold
                keep = False
            elif _step(slots, s, t, min_fixes, min_ms):
                n = _enter(slots, s, i, t, dwell_ms, heap, meta, out, n)
            if keep:
                prev = s
            else:
                if prev >= 0:
                    slots[prev, NEXT] = nxt
                else:
                    head[d] = nxt
                slots[s, DEV] = -1
                slots[s, NEXT] = meta[FREE]
                meta[FREE] = s
            s = nxt
        for k in range(a0, a):  # fences the fix is deep inside, without a slot yet
            f = df[k]
            s = head[d]
            while s >= 0 and slots[s, FENCE] != f:
                s = slots[s, NEXT]
            if s >= 0:
                continue
            if meta[FREE] >= 0:
                s = meta[FREE]
                meta[FREE] = slots[s, NEXT]
            else:
                s = meta[USED]
                meta[USED] += 1
            slots[s, DEV], slots[s, FENCE], slots[s, INSIDE] = d, f, 0
            slots[s, RUN], slots[s, VISIT], slots[s, NEXT] = 0, -1, head[d]
            head[d] = s
            if _step(slots, s, t, min_fixes, min_ms):
                n = _enter(slots, s, i, t, dwell_ms, heap, meta, out, n)
    return n


@jit.helper
def _has(fences: np.ndarray, lo: int, hi: int, f: int) -> bool:
    for k in range(lo, hi):
        if fences[k] == f:
            return True
    return False


@jit.helper
def _step(slots: np.ndarray, s: int, t: int, min_fixes: int, min_ms: int) -> bool:
    """Count one more qualifying fix; is the transition confirmed?"""
    slots[s, RUN] += 1
    if slots[s, RUN] == 1:
        slots[s, RUN_TS] = t
    return slots[s, RUN] >= min_fixes and t - slots[s, RUN_TS] >= min_ms


@jit.helper
def _emit(out: np.ndarray, n: int, fix: int, dev: int, f: int, kind: int, t: int,
          entered: int) -> int:
    out[n, 0], out[n, 1], out[n, 2] = fix, dev, f
    out[n, 3], out[n, 4], out[n, 5] = kind, t, entered
    return n + 1


@jit.helper
def _enter(slots: np.ndarray, s: int, i: int, t: int, dwell_ms: np.ndarray, heap: np.ndarray,
           meta: np.ndarray, out: np.ndarray, n: int) -> int:
    f = slots[s, FENCE]
    meta[VISITS] += 1
    slots[s, INSIDE], slots[s, RUN], slots[s, ENTERED] = 1, 0, t
    slots[s, FIRED], slots[s, VISIT] = 0, meta[VISITS]
    if dwell_ms[f] >= 0:
        _heap_push(heap, meta, t + dwell_ms[f], s, meta[VISITS])
    return _emit(out, n, i, slots[s, DEV], f, ENTER, t, t)


@jit.helper
def _fire_dwell(now: int, fix: int, slots: np.ndarray, heap: np.ndarray, meta: np.ndarray,
                out: np.ndarray, n: int) -> int:
    """Emit dwell_exceeded for every deadline <= now whose visit is still going on."""
    while meta[HEAP] > 0 and heap[0, 0] <= now:
        deadline, s, visit = heap[0, 0], heap[0, 1], heap[0, 2]
        _heap_pop(heap, meta)
        if (slots[s, DEV] >= 0 and slots[s, INSIDE] == 1 and slots[s, VISIT] == visit
                and slots[s, FIRED] == 0):
            slots[s, FIRED] = 1
            n = _emit(out, n, fix, slots[s, DEV], slots[s, FENCE], DWELL, deadline,
                      slots[s, ENTERED])
    return n


@jit.helper
def _before(heap: np.ndarray, i: int, j: int) -> bool:
    return heap[i, 0] < heap[j, 0] or (heap[i, 0] == heap[j, 0] and heap[i, 2] < heap[j, 2])


@jit.helper
def _swap(heap: np.ndarray, i: int, j: int) -> None:
    for c in range(3):
        heap[i, c], heap[j, c] = heap[j, c], heap[i, c]


@jit.helper
def _heap_push(heap: np.ndarray, meta: np.ndarray, deadline: int, s: int, visit: int) -> None:
    i = meta[HEAP]
    meta[HEAP] += 1
    heap[i, 0], heap[i, 1], heap[i, 2] = deadline, s, visit
    while i > 0 and _before(heap, i, (i - 1) // 2):
        _swap(heap, i, (i - 1) // 2)
        i = (i - 1) // 2


@jit.helper
def _heap_pop(heap: np.ndarray, meta: np.ndarray) -> None:
    meta[HEAP] -= 1
    size = meta[HEAP]
    _swap(heap, 0, size)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _before(heap, c + 1, c):
            c += 1
        if not _before(heap, c, i):
            break
        _swap(heap, i, c)
        i = c
