"""Where simulated events go, and how fast: the ``Sink`` protocol and ``run()``.

A sink declares which form it wants in ``wants``:
- ``"bytes"``: one ``bytes`` block of newline-terminated JSON lines per call (fastest);
- ``"lines"``: ``list[str]`` of JSON lines without newlines;
- ``"dicts"``: ``list[dict]`` of events.

A sink with ``timed = True`` also gets each batch's arrival times: ``write(batch, arrival_ms)``.

Adding a transport is one class. A Kafka sink, for example, would be::

    class KafkaSink:
        wants = "lines"
        def __init__(self, producer, topic): ...
        def write(self, batch):
            for line in batch:
                self.producer.produce(self.topic, line.encode())
        def close(self):
            self.producer.flush()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np
import orjson

from .simulation import Simulation

Progress = Callable[[int, float, float], Any]


@runtime_checkable
class Sink(Protocol):
    """Destination of simulated events (see module docstring)."""

    wants: str

    def write(self, batch: Any) -> None:
        """Deliver one batch (form given by ``wants``)."""

    def close(self) -> None:
        """Flush and release resources."""


class JsonlFileSink:
    """Writes JSON Lines to a file path (``-`` for stdout) or an open binary stream."""

    wants = "bytes"

    def __init__(self, target: str | Path | IO[bytes], buffer_size: int = 1 << 20) -> None:
        self._own = False
        if isinstance(target, str | Path):
            if str(target) == "-":
                self._f: IO[bytes] = sys.stdout.buffer
            else:
                self._f = open(target, "wb", buffering=buffer_size)
                self._own = True
        else:
            self._f = target

    def write(self, batch: bytes | list[str] | list[dict[str, Any]]) -> None:
        """Append a block, a list of lines or a list of event dicts."""
        if isinstance(batch, bytes | bytearray | memoryview):
            self._f.write(batch)
        elif batch:
            if isinstance(batch[0], str):
                self._f.write(("\n".join(batch) + "\n").encode())  # type: ignore[arg-type]
            else:
                self._f.write(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE)
                                       for e in batch))

    def close(self) -> None:
        """Flush; close the file if this sink opened it."""
        self._f.flush()
        if self._own:
            self._f.close()

    def __enter__(self) -> JsonlFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CallableSink:
    """Hands each batch to a function (e.g. the embedded runtime's ingest)."""

    def __init__(self, fn: Callable[[Any], Any], wants: str = "dicts",
                 on_close: Callable[[], Any] | None = None) -> None:
        if wants not in ("bytes", "lines", "dicts"):
            raise ValueError("wants must be 'bytes', 'lines' or 'dicts'")
        self.fn = fn
        self.wants = wants
        self._on_close = on_close

    def write(self, batch: Any) -> None:
        """Call the function with the batch."""
        self.fn(batch)

    def close(self) -> None:
        """Call ``on_close`` if given."""
        if self._on_close:
            self._on_close()


class MemorySink:
    """Collects everything in memory (tests, small runs)."""

    def __init__(self, wants: str = "dicts") -> None:
        self.wants = wants
        self.batches: list[Any] = []
        self.closed = False

    def write(self, batch: Any) -> None:
        """Keep the batch."""
        self.batches.append(batch)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

    @property
    def items(self) -> list[Any]:
        """All events/lines received (a single bytes object for ``bytes``)."""
        if self.wants == "bytes":
            return [b"".join(self.batches)]
        return [x for b in self.batches for x in b]


def _line_ends(block: bytes) -> list[int]:
    """Offsets of line starts in a block: [0, end of line 1, ..., len(block)]."""
    nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + 1
    return [0, *nl.tolist()]


def run(simulation: Simulation, sink: Sink, rate: float | None = None,
        speedup: float | None = None, progress: Progress | None = None,
        batch_size: int = 10_000, progress_every_s: float = 0.5, close: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep) -> dict[str, float]:
    """Send all events of ``simulation`` to ``sink`` in arrival order.

    - neither ``rate`` nor ``speedup``: as fast as possible;
    - ``rate``: at most this many events per second of wall time;
    - ``speedup``: replay the arrival clock ``speedup`` times faster than wall time
      (1.0 = real time); with both, the slower schedule wins.
    ``progress(sent, rate, lag)`` is called about every ``progress_every_s`` and at the end:
    ``rate`` is events/s over the last interval, ``lag`` the seconds behind schedule (0 when
    unpaced). Returns ``{"sent", "elapsed_s", "rate"}``.
    """
    if rate is not None and rate <= 0 or speedup is not None and speedup <= 0:
        raise ValueError("rate and speedup must be positive")
    form = getattr(sink, "wants", "lines")
    paced = rate is not None or speedup is not None
    n = min(batch_size, 1000) if paced else batch_size
    t0 = clock()
    last_t, last_sent, sent, lag = t0, 0, 0, 0.0
    a0: int | None = None

    timed = getattr(sink, "timed", False)

    def emit(part: Any, k: int, arrival: np.ndarray) -> None:
        nonlocal sent, last_t, last_sent
        if timed:
            sink.write(part, arrival)
        else:
            sink.write(part)
        sent += k
        now = clock()
        if progress and now - last_t >= progress_every_s:
            progress(sent, (sent - last_sent) / max(now - last_t, 1e-9), lag)
            last_t, last_sent = now, sent

    try:
        for batch, arrival in simulation.iter_timed(n, form):
            k = arrival.size
            if not paced:
                emit(batch, k, arrival)
                continue
            if a0 is None:
                a0 = int(arrival[0])
            due = np.zeros(k)
            if rate is not None:
                due = np.maximum(due, (sent + np.arange(k)) / rate)
            if speedup is not None:
                due = np.maximum(due, (arrival - a0) / 1000.0 / speedup)
            cuts = _line_ends(batch) if form == "bytes" else None
            i = 0
            while i < k:
                wait = float(due[i]) - (clock() - t0)
                if wait > 0:
                    sleep(wait)
                now_rel = clock() - t0
                j = max(i + 1, int(np.searchsorted(due, now_rel + 0.02, side="right")))
                lag = max(0.0, now_rel - float(due[j - 1]))
                part = batch[cuts[i]:cuts[j]] if cuts is not None else batch[i:j]
                emit(part, j - i, arrival[i:j])
                i = j
    finally:
        if close:
            sink.close()
    elapsed = clock() - t0
    avg = sent / elapsed if elapsed > 0 else float("inf")
    if progress:
        progress(sent, avg, lag)
    return {"sent": sent, "elapsed_s": elapsed, "rate": avg}
