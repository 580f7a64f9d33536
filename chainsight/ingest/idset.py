"""Event ids as 128-bit hashes, remembered in Numba open-addressing hash sets.

`span_hash` hashes a byte span to two int64 (h1, h2); `IdWindow` remembers such pairs for one to
two windows of event time: the memory behind duplicate suppression (`chainsight.ingest`).

Snapshots of an `IdWindow` hold hashes, so the hash is part of the snapshot format: do not
change it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from chainsight import jit
from chainsight.engine.state import NO_TS

_FNV_BASIS = np.uint64(0xCBF29CE484222325)  # FNV-1a 64 offset basis
_FNV_PRIME = np.uint64(0x00000100000001B3)  # FNV-1a 64 prime
_BASIS2 = np.uint64(0x6C62272E07BB0142)  # second lane: another basis ...
_PRIME2 = np.uint64(0x9E3779B97F4A7C15)  # ... and a dense odd multiplier
_GAMMA = np.uint64(0xD1B54A32D192ED03)  # mixes the length into h2
_SLOT1 = np.uint64(0xD6E8FEB86659FD93)  # table slot: multiply-shift of both keys
_SLOT2 = np.uint64(0xFF51AFD7ED558CCD)
_MIN_CAPACITY = 16


@njit(cache=True, inline="always")
def _fmix64(k: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser."""
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xFF51AFD7ED558CCD)
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xC4CEB9FE1A85EC53)
    return k ^ (k >> np.uint64(33))


@njit(cache=True, inline="always")
def _splitmix64(z: np.uint64) -> np.uint64:
    """SplitMix64's finaliser (Stafford's mix13)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@jit.helper
def span_hash(buf: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """128-bit hash of `buf[start:end]` (uint8, bounds not checked) as two int64.

    h1: FNV-1a 64, MurmurHash3-finalised; h2: FNV-1a-style with another basis and multiplier,
    length mixed in, SplitMix64-finalised. Stable across processes, runs and platforms.
    """
    h = _FNV_BASIS
    g = _BASIS2
    for i in range(start, end):
        b = np.uint64(buf[i])
        h = (h ^ b) * _FNV_PRIME
        g = (g ^ b) * _PRIME2
    g += np.uint64(end - start) * _GAMMA
    return np.int64(_fmix64(h)), np.int64(_splitmix64(g))


@njit(cache=True)
def hash_spans(buf: np.ndarray, starts: np.ndarray,
               ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`span_hash` of every span `buf[starts[i]:ends[i]]`."""
    n = starts.size
    h1 = np.empty(n, np.int64)
    h2 = np.empty(n, np.int64)
    for i in range(n):
        h1[i], h2[i] = span_hash(buf, starts[i], ends[i])
    return h1, h2


def hash_strings(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`span_hash` of the UTF-8 bytes of every string."""
    joined = "".join(ids)
    if joined.isascii():  # one encode; byte lengths are the string lengths
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    else:  # surrogatepass: lone surrogates (legal in JSON escapes) hash instead of raising
        encoded = [s.encode("utf-8", "surrogatepass") for s in ids]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), np.int64, len(ids))
    ends = np.cumsum(lengths)
    return hash_spans(np.frombuffer(data, np.uint8), ends - lengths, ends)


@njit(cache=True, inline="always")
def _mix(a: int, b: int) -> np.uint64:
    """Multiply-shift hash of key (a, b): its top bits pick the slot, bits 24-30 the tag."""
    return ((np.uint64(a) * _SLOT1) ^ np.uint64(b)) * _SLOT2


@njit(cache=True, inline="always")
def _tag(x: np.uint64) -> np.uint8:
    """Occupancy byte of a key: nonzero, and a 7-bit fingerprint that saves most key reads."""
    return np.uint8(((x >> np.uint64(24)) & np.uint64(0x7F)) | np.uint64(0x80))


@jit.helper
def _find(keys: np.ndarray, tags: np.ndarray, index: np.ndarray, shift: int, a: int, b: int,
          x: np.uint64) -> int:
    """Slot holding key (a, b) (mixed to x), or the free slot where it belongs (linear
    probing)."""
    mask = tags.size - 1
    tag = _tag(x)
    s = np.intp(x >> np.uint64(shift))
    while True:
        u = tags[s]
        if u == 0 or (u == tag and keys[index[s], 0] == a and keys[index[s], 1] == b):
            return s
        s = (s + 1) & mask


@njit(cache=True)
def _insert(src: np.ndarray, keys: np.ndarray, tags: np.ndarray, index: np.ndarray, shift: int,
            count: int) -> int:
    """Inserts the keys `src[i]` into a table holding `count`; returns how many it holds."""
    for i in range(src.shape[0]):
        a = src[i, 0]
        b = src[i, 1]
        x = _mix(a, b)
        s = _find(keys, tags, index, shift, a, b, x)
        if not tags[s]:
            keys[count, 0] = a
            keys[count, 1] = b
            tags[s] = _tag(x)
            index[s] = count
            count += 1
    return count


@njit(cache=True)
def _member(src: np.ndarray, keys: np.ndarray, tags: np.ndarray, index: np.ndarray,
            shift: int) -> np.ndarray:
    """Whether each key `src[i]` is in the table."""
    out = np.empty(src.shape[0], np.bool_)
    for i in range(src.shape[0]):
        a = src[i, 0]
        b = src[i, 1]
        out[i] = tags[_find(keys, tags, index, shift, a, b, _mix(a, b))] != 0
    return out


@njit(cache=True)
def _offer(h1: np.ndarray, h2: np.ndarray, i: int, keys: np.ndarray, tags: np.ndarray,
           index: np.ndarray, shift: int, count: int, prev_keys: np.ndarray,
           prev_tags: np.ndarray, prev_index: np.ndarray, prev_shift: int, out: np.ndarray,
           n_out: int, overlap: int) -> tuple[int, int, int, int]:
    """Looks up and inserts rows i.. of a batch; fresh rows go to `out`. Stops at the first row
    that needs a slot when the table is full (load 0.5). Returns (next row, count, n_out,
    overlap)."""
    n = h1.size
    limit = keys.shape[0]
    while i < n:
        a = h1[i]
        b = h2[i]
        x = _mix(a, b)
        s = _find(keys, tags, index, shift, a, b, x)
        if not tags[s]:
            if count >= limit:
                break
            keys[count, 0] = a
            keys[count, 1] = b
            tags[s] = _tag(x)
            index[s] = count
            count += 1
            if prev_tags[_find(prev_keys, prev_tags, prev_index, prev_shift, a, b, x)]:
                overlap += 1
            else:
                out[n_out] = i
                n_out += 1
        i += 1
    return i, count, n_out, overlap


class _Table:
    """Open-addressing set of int64 pairs. The pairs are kept in insertion order,
    keys[:count]; each slot holds a tag (0: free) and the position of its pair in `keys`, so
    the slots that lookups visit at random take 5 bytes each (not the 16 of a pair), and
    growing copies the pairs in order."""

    __slots__ = ("keys", "tags", "index", "shift", "count")

    def __init__(self, capacity: int) -> None:  # a power of two >= 2; holds capacity // 2
        self.keys = np.empty((capacity // 2, 2), np.int64)
        self.tags = np.zeros(capacity, np.uint8)
        self.index = np.empty(capacity, np.int32)
        self.shift = 65 - capacity.bit_length()
        self.count = 0

    @classmethod
    def of(cls, pairs: np.ndarray) -> _Table:
        """A table holding the (n, 2) int64 `pairs`, at most half full."""
        table = cls(_capacity_for(len(pairs)))
        table.count = _insert(pairs, *table._arrays(), 0)
        return table

    def grown(self) -> _Table:
        """This table's keys in one of twice the capacity."""
        table = _Table(2 * self.tags.size)
        table.count = _insert(self.keys[:self.count], *table._arrays(), 0)
        return table

    def pairs(self) -> np.ndarray:
        """The keys, (count, 2) int64, in insertion order."""
        return self.keys[:self.count].copy()

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return self.keys, self.tags, self.index, self.shift


def _capacity_for(n: int) -> int:
    """Smallest power of two (at least _MIN_CAPACITY) that holds n keys at load <= 0.5."""
    return max(_MIN_CAPACITY, 1 << (2 * n - 1).bit_length())


class IdWindow:
    """Remembers 128-bit event ids for one to two `window_ms` of event time (two rotating
    generations)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.generation_start = NO_TS
        self._current = _Table(_MIN_CAPACITY)
        self._previous = _Table(_MIN_CAPACITY)
        self._overlap = 0  # ids in both generations
        self._out = np.empty(0, np.int64)  # scratch for fresh()

    def fresh(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray | None:
        """Indices (ascending) of rows whose id (h1, h2) was not seen before, in either generation
        or earlier in the batch; None when every row is. Every id of the batch is remembered in
        the current generation (an id found only in the previous one moves forward, so an id
        that keeps coming back is never forgotten)."""
        h1 = np.ascontiguousarray(h1, np.int64)
        h2 = np.ascontiguousarray(h2, np.int64)
        if h1.ndim != 1 or h1.shape != h2.shape:
            raise ValueError(f"h1 and h2 must be 1-d of one length, not {h1.shape}, {h2.shape}")
        n = h1.size
        if self._out.size < n:
            self._out = np.empty(n, np.int64)
        cur, prev = self._current, self._previous
        i = n_out = 0
        while True:
            i, cur.count, n_out, self._overlap = _offer(
                h1, h2, i, *cur._arrays(), cur.count, *prev._arrays(), self._out, n_out,
                self._overlap)
            if i == n:
                break
            cur = self._current = cur.grown()
        return None if n_out == n else self._out[:n_out].copy()

    def expire(self, newest_ts: int) -> None:
        """Starts a new generation (forgetting the previous one) once the current one is
        `window_ms` old."""
        if newest_ts - self.generation_start >= self.window_ms:
            self._previous = self._current
            self._current = _Table(_capacity_for(self._previous.count))
            self._overlap = 0
            self.generation_start = newest_ts

    def __len__(self) -> int:
        """Distinct ids remembered, over both generations."""
        return self._current.count + self._previous.count - self._overlap

    def dump_state(self) -> dict:
        """Only the ids, as (n, 2) int64 (h1, h2) pairs; previous-generation ids that are also
        in the current one are left out (lookups and rotation do not tell the difference)."""
        cur = self._current
        previous = self._previous.pairs()
        previous = previous[~_member(previous, *cur._arrays())]
        return {"generation_start": self.generation_start, "current": cur.pairs(),
                "previous": previous}

    def load_state(self, data: dict) -> None:
        self.generation_start = data["generation_start"]
        self._current, self._previous = (
            _Table.of(np.asarray(data[g], dtype=np.int64).reshape(-1, 2))
            for g in ("current", "previous"))
        self._overlap = 0

    # The pickled (version 2) snapshots held IdWindows in this form; only the operator command
    # `chainsight migrate-snapshots --trust-pickle` still reads them (and its tests write them).

    def __getstate__(self) -> dict:
        state = self.dump_state()
        return {"window_ms": self.window_ms, "generation_start": state["generation_start"],
                "current": state["current"].astype("<i8").tobytes(),
                "previous": state["previous"].astype("<i8").tobytes()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["window_ms"])
        pairs = {g: np.frombuffer(state[g], "<i8").reshape(-1, 2) for g in ("current", "previous")}
        self.load_state({"generation_start": state["generation_start"], **pairs})
