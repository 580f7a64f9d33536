"""Numba as this project uses it: its compiler started without BLAS, and kernels' helpers.

`start`: Numba's compiler started without its BLAS support, which costs ~0.1 s of every
start-up. The first compiled function that runs (or is loaded from the cache) makes Numba load
its implementations, among them numpy.linalg's, which import scipy.linalg (all of it) when SciPy
is installed, as it is here (River needs it). None of this project's kernels use linear
algebra, so `start` loads the implementations with scipy.linalg.cython_blas hidden: Numba then
reports linear algebra as unavailable to kernels compiled in this process, and scipy.linalg
itself still imports as usual afterwards. Calling `start` is optional (Numba starts itself on
first use) and does nothing once Numba has started or SciPy's BLAS is already imported.

`helper`: how a function that kernels call per element is compiled.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import numba

F = TypeVar("F", bound=Callable)

_BLAS = "scipy.linalg.cython_blas"


def start() -> None:
    """Start Numba's compiler (loading cached kernels needs it) without SciPy's BLAS."""
    from numba.core.registry import cpu_target

    if _BLAS in sys.modules:
        cpu_target.target_context.refresh()
        return
    sys.modules[_BLAS] = None  # an import of it raises ImportError
    try:
        cpu_target.target_context.refresh()
    finally:
        del sys.modules[_BLAS]


def helper(function: F) -> F:
    """Compile a kernel's helper: a function that compiled code calls once per element (a line,
    a row, an edge). It is compiled without Numba's reference counting, which otherwise
    passes each call's array arguments through atomic increments and decrements that cost more
    than a small helper's work (the line scanner ran 40% faster without them). A helper cannot
    make arrays: Numba refuses to compile one that tries."""
    return numba.njit(cache=True, _nrt=False)(function)
