import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from chainsight.engine.state import NO_TS
from chainsight.ingest.idset import IdWindow, hash_spans, hash_strings, span_hash
from chainsight.runtimes.kafka import snapshots

M64 = (1 << 64) - 1
STRINGS = ["TRK-000123-000045", "", "a", "é", "日本語", "🚚 pallet #7", "\x00", "\x00\x00",
           "x" * 1000, "TRK-000123-000046", "\ud800"]  # last: a lone surrogate (legal JSON)


def _signed(x):
    return x - (1 << 64) if x >> 63 else x


def ref_hash(data: bytes) -> tuple[int, int]:
    """The hash spelt out in Python integers: the specification the Numba code must meet."""
    h, g = 0xCBF29CE484222325, 0x6C62272E07BB0142
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
        g = ((g ^ b) * 0x9E3779B97F4A7C15) & M64
    g = (g + len(data) * 0xD1B54A32D192ED03) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    h ^= h >> 33
    g = ((g ^ (g >> 30)) * 0xBF58476D1CE4E5B9) & M64
    g = ((g ^ (g >> 27)) * 0x94D049BB133111EB) & M64
    g ^= g >> 31
    return _signed(h), _signed(g)


def _encode(s):
    return s.encode("utf-8", "surrogatepass")


@njit
def _hash_in_kernel(buf, start, end):
    return span_hash(buf, start, end)


# --- hashing -----------------------------------------------------------------------------------

def test_hash_strings_meets_reference():
    h1, h2 = hash_strings(STRINGS)
    assert h1.dtype == h2.dtype == np.int64
    assert list(zip(h1.tolist(), h2.tolist(), strict=True)) == [
        ref_hash(_encode(s)) for s in STRINGS]


def test_ascii_and_non_ascii_paths_agree():
    ascii_only = [s for s in STRINGS if s.isascii()]
    h1, h2 = hash_strings(ascii_only)
    m1, m2 = hash_strings(ascii_only + ["é"])
    assert np.array_equal(h1, m1[:-1]) and np.array_equal(h2, m2[:-1])


def test_span_hash_inside_larger_buffer_equals_hash_strings():
    rng = np.random.default_rng(7)
    parts, starts, ends = [], [], []
    pos = 0
    for s in STRINGS:
        junk = rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8).tobytes()
        parts += [junk, _encode(s)]
        starts.append(pos + len(junk))
        pos += len(junk) + len(_encode(s))
        ends.append(pos)
    buf = np.frombuffer(b"".join(parts) + b"tail", np.uint8)
    starts, ends = np.array(starts), np.array(ends)
    h1, h2 = hash_strings(STRINGS)
    s1, s2 = hash_spans(buf, starts, ends)
    assert np.array_equal(s1, h1) and np.array_equal(s2, h2)
    for i in range(len(STRINGS)):
        expected = (int(h1[i]), int(h2[i]))
        assert span_hash(buf, starts[i], ends[i]) == expected
        assert _hash_in_kernel(buf, starts[i], ends[i]) == expected


def test_golden_values():
    """Snapshots hold these hashes: the function must never change."""
    h1, h2 = hash_strings(["TRK-000123-000045", "", "é"])
    assert list(zip(h1.tolist(), h2.tolist(), strict=True)) == [
        (-2731674682367392811, -1141682471027873358),
        (-1166397803181037274, 2964520691612219563),
        (-7109551338664069573, -4028358959090975401)]


def test_empty_list():
    h1, h2 = hash_strings([])
    assert h1.shape == h2.shape == (0,)


def test_no_collisions_in_200k_ids():
    ids = [f"TRK-{i:06d}-{j:06d}" for i in range(400) for j in range(500)]
    h1, h2 = hash_strings(ids)
    assert len(np.unique(h1)) == len(ids)
    assert len(np.unique(h2)) == len(ids)
    assert len(np.unique(np.stack([h1, h2], axis=1), axis=0)) == len(ids)
    # the lanes are not the same function in disguise
    assert abs(np.corrcoef(h1.astype(float), h2.astype(float))[0, 1]) < 0.01


def test_stable_across_processes(tmp_path):
    code = ("import json, sys; from chainsight.ingest.idset import hash_strings; "
            "h1, h2 = hash_strings(json.loads(sys.argv[1])); "
            "print(json.dumps([h1.tolist(), h2.tolist()]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "NUMBA_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code, json.dumps(STRINGS[:-1])], env=env,
                         cwd=Path(__file__).parents[1], capture_output=True, text=True,
                         check=True)
    h1, h2 = hash_strings(STRINGS[:-1])
    assert json.loads(run.stdout) == [h1.tolist(), h2.tolist()]


# --- IdWindow ----------------------------------------------------------------------------------

def _ids(*names):
    return hash_strings(list(names))


def test_all_new_is_none_and_empty_batch_is_none():
    w = IdWindow(1000)
    assert w.window_ms == 1000 and w.generation_start == NO_TS
    assert w.fresh(*_ids("a", "b", "c")) is None
    assert len(w) == 3
    assert w.fresh(*_ids()) is None
    assert len(w) == 3


def test_duplicates_in_batch_keep_first_and_seen_ids_are_dropped():
    w = IdWindow(1000)
    r = w.fresh(*_ids("a", "b", "a", "c", "b", "a"))
    assert r.dtype == np.int64 and r.tolist() == [0, 1, 3]
    assert w.fresh(*_ids("c", "d", "a", "d", "e")).tolist() == [1, 4]
    assert w.fresh(*_ids("a", "b", "c", "d", "e")).tolist() == []
    assert len(w) == 5


def test_result_is_not_overwritten_by_later_calls():
    w = IdWindow(1000)
    r = w.fresh(*_ids("a", "a", "b"))
    w.fresh(*_ids("c", "c", "d", "e", "f"))
    assert r.tolist() == [0, 2]


def test_generations():
    w = IdWindow(1000)
    w.fresh(*_ids("a"))
    w.expire(0)  # the first call always rotates
    assert w.generation_start == 0
    w.expire(999)  # not yet
    assert w.generation_start == 0
    assert w.fresh(*_ids("b")) is None
    assert len(w) == 2
    w.expire(1000)  # "a" forgotten, "b" now in the previous generation
    assert w.generation_start == 1000 and len(w) == 1
    assert w.fresh(*_ids("a", "b")).tolist() == [0]


def test_previous_generation_id_moves_forward_like_deduplicator():
    w = IdWindow(1000)
    w.fresh(*_ids("a"))
    w.expire(0)
    assert w.fresh(*_ids("a")).tolist() == []  # seen in the previous generation ...
    assert len(w) == 1  # ... and now in both: counted once
    w.expire(1000)
    assert w.fresh(*_ids("a")).tolist() == []  # ... so it survived this rotation
    w.expire(2000)
    w.expire(3000)
    assert w.fresh(*_ids("a")) is None


def test_any_int64_pair_is_an_id():
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    h1 = np.array([0, 0, 0, lo, lo, hi, -1, 0], np.int64)
    h2 = np.array([0, 1, lo, 0, lo, hi, -1, 0], np.int64)
    w = IdWindow(1000)
    assert w.fresh(h1, h2).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert w.fresh(h1[::-1], h2[::-1]).tolist() == []
    assert w.fresh(np.array([1, 0]), np.array([0, 2])) is None  # lists, other dtypes are cast
    assert len(w) == 9


def test_keys_sharing_one_half_are_distinct():
    same, other = np.full(100_000, 42, np.int64), np.arange(100_000, dtype=np.int64)
    for h1, h2 in ((same, other), (other, same)):
        w = IdWindow(1000)
        assert w.fresh(h1, h2) is None
        assert w.fresh(h1, h2).tolist() == []
        assert len(w) == 100_000


def test_bad_shapes():
    with pytest.raises(ValueError):
        IdWindow(1).fresh(np.zeros(3, np.int64), np.zeros(2, np.int64))


def test_growth_keeps_every_id():
    ids = [f"TRK-{i // 1000:06d}-{i % 1000:06d}" for i in range(1_000_000)]
    h1, h2 = hash_strings(ids)
    w = IdWindow(60_000)
    for i in range(0, len(ids), 50_000):
        assert w.fresh(h1[i:i + 50_000], h2[i:i + 50_000]) is None
    assert len(w) == len(ids)
    sample = np.random.default_rng(1).choice(len(ids), 20_000, replace=False)
    assert w.fresh(h1[sample], h2[sample]).tolist() == []
    assert w.fresh(h1 ^ 1, h2) is None  # near misses are new
    assert len(w) == 2 * len(ids)


def round_trip(w):
    """`w` through a snapshot: dump_state, encoded and decoded, loaded into a new window."""
    v = IdWindow(w.window_ms)
    v.load_state(snapshots.decode(snapshots.encode(w.dump_state())))
    return v


def test_snapshot_round_trip():
    rng = np.random.default_rng(3)
    h1, h2 = rng.integers(-(2**63), 2**63 - 1, (2, 120_000), dtype=np.int64, endpoint=True)
    w = IdWindow(1000)
    w.fresh(h1[:60_000], h2[:60_000])
    w.expire(5)
    w.fresh(h1[40_000:100_000], h2[40_000:100_000])  # 20,000 ids in both generations
    assert len(w) == 100_000
    assert len(snapshots.encode(w.dump_state())) < 40 * len(w)
    v = round_trip(w)
    assert (v.window_ms, v.generation_start, len(v)) == (1000, 5, 100_000)
    for window in (w, v):  # the same answers from here on
        assert window.fresh(h1[::7], h2[::7]).tolist() == np.flatnonzero(
            np.arange(0, 120_000, 7) >= 100_000).tolist()
        window.expire(1005)
        # ids 0..39,999 are forgotten, except every 7th, which the last batch moved forward
        assert window.fresh(h1[:50_000], h2[:50_000]).tolist() == [
            i for i in range(40_000) if i % 7]
        window.expire(2005)
        assert len(window) == 50_000
    assert round_trip(IdWindow(7)).fresh(*_ids("a")) is None


# --- against a reference built on Python sets -----------------------------------------------------

class SetWindow:
    """The semantics of duplicate suppression, over Python sets."""

    def __init__(self, window_ms):
        self.window_ms = window_ms
        self.current, self.previous = set(), set()
        self.generation_start = NO_TS

    def fresh(self, keys):
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        seen = {k for k in first if k in self.current or k in self.previous}
        self.current.update(first)
        if len(first) == len(keys) and not seen:
            return None
        return sorted(i for k, i in first.items() if k not in seen)

    def expire(self, newest_ts):
        if newest_ts - self.generation_start >= self.window_ms:
            self.previous, self.current = self.current, set()
            self.generation_start = newest_ts

    def __len__(self):
        return len(self.current | self.previous)


LO, HI = np.iinfo(np.int64).min, np.iinfo(np.int64).max
# few distinct h1 and h2 values: many keys share one half; extremes included
KEYS = [(a, b) for a in (0, 1, -1, LO, HI, 12345) for b in (0, 7, LO, HI, -99)]
OPS = st.lists(st.one_of(
    st.tuples(st.just("fresh"), st.lists(st.integers(0, len(KEYS) - 1), max_size=40)),
    st.tuples(st.just("expire"), st.integers(0, 1500)),
    st.tuples(st.just("snapshot"), st.none())), max_size=30)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_matches_set_reference(ops):
    w, ref, ts = IdWindow(1000), SetWindow(1000), 0
    for op, arg in ops:
        if op == "fresh":
            keys = [KEYS[k] for k in arg]
            h1 = np.array([k[0] for k in keys], np.int64)
            h2 = np.array([k[1] for k in keys], np.int64)
            got, expected = w.fresh(h1, h2), ref.fresh(keys)
            assert (got if got is None else got.tolist()) == expected
        elif op == "expire":
            ts += arg
            w.expire(ts)
            ref.expire(ts)
            assert w.generation_start == ref.generation_start
        else:
            w = round_trip(w)
        assert len(w) == len(ref)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.text(max_size=6), max_size=300), max_size=8))
def test_many_string_ids_match_set_reference(batches):
    w, ref = IdWindow(1000), SetWindow(1000)
    for i, batch in enumerate(batches):
        got, expected = w.fresh(*hash_strings(batch)), ref.fresh(batch)
        assert (got if got is None else got.tolist()) == expected
        w.expire(i * 400)
        ref.expire(i * 400)
        assert len(w) == len(ref)
