"""Numba's compiler started without its BLAS support, which costs ~0.1 s of every start-up.

The first compiled function that runs (or is loaded from the cache) makes Numba load its
implementations, among them numpy.linalg's, which import scipy.linalg (all of it) when SciPy
is installed, as it is here (River needs it). None of this project's kernels use linear
algebra, so `start` loads the implementations with scipy.linalg.cython_blas hidden: Numba then
reports linear algebra as unavailable to kernels compiled in this process, and scipy.linalg
itself still imports as usual afterwards. Calling `start` is optional (Numba starts itself on
first use) and does nothing once Numba has started or SciPy's BLAS is already imported.
"""

from __future__ import annotations

import sys

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
