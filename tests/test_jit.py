"""Kernels' helpers: compiled without reference counting, so they cannot make arrays."""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from chainsight import jit


@jit.helper
def doubled(values: np.ndarray, i: int) -> float:
    return values[i] * 2


@numba.njit(cache=True)
def total_doubled(values: np.ndarray) -> float:
    total = 0.0
    for i in range(values.size):
        total += doubled(values, i)
    return total


def test_a_kernel_passes_arrays_to_a_helper_without_counting_references(tmp_path):
    """Compiled afresh (an empty cache: code loaded from a cache cannot be inspected)."""
    script = ("import numpy as np; from test_jit import doubled, total_doubled; "
              "values = np.arange(5.0); assert total_doubled(values) == 20.0; "
              "assert doubled(values, 4) == 8.0; "
              "code = doubled.inspect_llvm(doubled.signatures[0]); "
              "print('define' in code, 'NRT_incref' in code or 'NRT_decref' in code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent, timeout=120,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert done.stdout.split() == ["True", "False"]


def test_a_helper_that_makes_an_array_does_not_compile():
    @jit.helper
    def makes(n: int) -> float:
        return np.zeros(n).sum()

    with pytest.raises(numba.TypingError):
        makes(3)
