import numpy as np
import pytest

from chainsight.ingest.rows import Rows, _time_order

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("ts", [
    [], [5], [3, 3, 1, 3, 1],
    RNG.integers(-2**63, 2**63 - 1, 5_000),  # the whole int64 range: six passes
    RNG.integers(0, 10, 5_000),  # one pass, many equal times
    np.sort(RNG.integers(0, 10**12, 5_000)),
    [-2**63, 2**63 - 1, 0, -2**63, 2**63 - 1],
])
def test_time_order_is_a_stable_argsort(ts):
    ts = np.asarray(ts, np.int64)
    assert np.array_equal(_time_order(ts), np.argsort(ts, kind="stable"))


def rows(n: int) -> Rows:
    return Rows(*(RNG.integers(-100, 100, n).astype(t) if np.dtype(t).kind == "i"
                  else RNG.normal(size=n).astype(t) for t in Rows.DTYPES))


def test_take_copies_every_column_at_positions_or_a_mask():
    r = rows(1_000)
    index = RNG.integers(0, 1_000, 3_000)
    mask = RNG.random(1_000) < 0.3
    for taken, expected in ((r.take(index), index), (r.take(mask), np.flatnonzero(mask))):
        for c in Rows.COLUMNS:
            assert np.array_equal(getattr(taken, c), getattr(r, c)[expected])
            assert getattr(taken, c).dtype == getattr(r, c).dtype


def test_in_time_order_sorts_by_time_then_arrival():
    r = rows(2_000)
    r.ts = RNG.integers(0, 50, 2_000)  # many equal times
    r.seq = np.arange(2_000)
    ordered = r.in_time_order()
    assert np.array_equal(np.lexsort((ordered.seq, ordered.ts)), np.arange(2_000))
