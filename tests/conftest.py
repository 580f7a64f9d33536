import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chainsight.sim import simulate  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    """The smoke scenario (modules that need another one define their own `sim`)."""
    return simulate("smoke")


@pytest.fixture(scope="module")
def events(sim):
    return list(sim)
