"""In-band control records on the events topic: clock ticks and end-of-stream markers.

Anything that moves a partition's event time without an event (a wall-clock tick of an idle
partition, the end of a recorded stream) is written into that partition as a record with the
header `chainsight-control`, so that reprocessing the partition after a crash replays it at the
same position and gives the same alerts. The value is a small JSON object:

- `tick`  `{"now": ms}`: `Engine.advance(now)`, written by a worker for an idle partition;
- `flush` `{"clock": ms}`: `Engine.flush()`, then event time moves to `clock` (the newest event
  time of the whole recorded stream), written by a producer at the end of a recorded stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from chainsight.core import Engine, Output

HEADER = "chainsight-control"
TICK, FLUSH = b"tick", b"flush"

Headers = Sequence[tuple[str, bytes]]


def tick(now_ms: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of a wall-clock tick."""
    return [(HEADER, TICK)], orjson.dumps({"now": now_ms})


def flush(clock_ms: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """(headers, value) of an end-of-stream marker."""
    return [(HEADER, FLUSH)], orjson.dumps({"clock": clock_ms})


def kind(headers: Headers) -> bytes | None:
    """The control kind of a record, None for an event."""
    for name, value in headers:
        if name == HEADER:
            return value
    return None


def apply(engine: Engine, control: bytes, value: bytes) -> Output:
    """Run one control record through `engine`; unknown kinds change nothing."""
    body = orjson.loads(value)
    if control == TICK:
        return engine.advance(int(body["now"]))
    if control == FLUSH:
        out = engine.flush()
        return out.extend(engine.advance(int(body["clock"]) + engine.settings.allowed_lateness_ms))
    return Output()
