"""Kernels' helpers: compiled without reference counting, so they cannot make arrays."""

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


def test_a_kernel_passes_arrays_to_a_helper_without_counting_references():
    values = np.arange(5.0)
    assert total_doubled(values) == 20.0
    assert doubled(values, 4) == 8.0  # compiled here too, or loaded from the cache
    code = doubled.inspect_llvm(doubled.signatures[0])
    assert "NRT_incref" not in code and "NRT_decref" not in code


def test_a_helper_that_makes_an_array_does_not_compile():
    @jit.helper
    def makes(n: int) -> float:
        return np.zeros(n).sum()

    with pytest.raises(numba.TypingError):
        makes(3)
