"""ASCII text written into byte buffers by compiled code: the lines that kernels put together
(published ETAs, the record's blocks). Each function writes at `at` and returns where it ends."""

from __future__ import annotations

import numpy as np

from chainsight import jit


@jit.helper
def put(out: np.ndarray, at: int, text: bytes | np.ndarray) -> int:
    """Copy `text` (bytes, or a uint8 array: a slice of `out` that starts at or after `at`
    too); its bytes go one by one, in order."""
    for c in text:
        out[at] = c
        at += 1
    return at


@jit.helper
def decimal_digits(value: int) -> int:
    """How many digits a non-negative integer has in decimal."""
    n = 1
    while value >= 10:
        value //= 10
        n += 1
    return n


@jit.helper
def put_digits(out: np.ndarray, at: int, value: int, digits: int) -> int:
    """A non-negative integer in decimal, `digits` wide (zeros in front)."""
    for d in range(digits - 1, -1, -1):
        out[at] = 48 + value // 10 ** d % 10
        at += 1
    return at
