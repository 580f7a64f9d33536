"""`chainsight replay`: run the live pipeline over a recorded JSON Lines file, as fast as it can.

Decoding and column extraction are stateless, so with `workers` > 0 they run in worker processes
while this process interns ids, reorders and runs the rules; chunks are consumed in file order,
so the output is the same as in one process.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import BinaryIO

import orjson

from chainsight.core import Engine, Output
from chainsight.events import EventDecoder, now_ms
from chainsight.ingest import Extracted, extract

CHUNK_LINES = 65_536
_worker_decoder: tuple[EventDecoder, int] | None = None  # set in each worker process


@dataclass
class ReplayResult:
    events: int
    alerts: int
    rejected: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def default_workers() -> int:
    """Decode workers worth starting on this machine (0: decode in this process)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


def replay(events: Path, engine: Engine, alerts_out: Path | None = None,
           dead_letter_out: Path | None = None, state_out: Path | None = None,
           workers: int = 0) -> ReplayResult:
    """Replay `events` through `engine`, writing the contract's output files."""
    started = time.perf_counter()
    n_alerts = 0
    with open(events, "rb") as source, \
            _open(alerts_out) as alerts, _open(dead_letter_out) as dead:

        def emit(out: Output) -> None:
            nonlocal n_alerts
            n_alerts += len(out.alerts)
            _write(alerts, out.alerts)
            _write(dead, out.dead_letters)

        if workers > 0:
            for batch in _extract_in_workers(_chunks(source), engine.ingest.decoder, workers):
                emit(engine.process_extracted(batch))
        else:
            for chunk, first_line in _chunks(source):
                emit(engine.process(chunk, first_line=first_line))
        emit(engine.flush())
    if state_out is not None:
        state_out.write_bytes(orjson.dumps(engine.snapshot(), option=orjson.OPT_INDENT_2))
    counters = engine.counters
    return ReplayResult(counters["events"], n_alerts, counters["rejected"],
                        time.perf_counter() - started)


def _chunks(source: BinaryIO) -> Iterator[tuple[list[bytes], int]]:
    line_no = 1
    while chunk := list(islice(source, CHUNK_LINES)):
        yield chunk, line_no
        line_no += len(chunk)


def _extract_in_workers(chunks: Iterator[tuple[list[bytes], int]], decoder: EventDecoder,
                        workers: int) -> Iterator[Extracted]:
    """Extracted chunks in file order, decoded by `workers` processes a few chunks ahead."""
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(decoder, now_ms())) as pool:
        ahead: deque[AsyncResult] = deque()
        for chunk in chunks:
            ahead.append(pool.apply_async(_extract_chunk, chunk))
            if len(ahead) > 2 * workers:
                yield ahead.popleft().get()
        while ahead:
            yield ahead.popleft().get()


def _start_worker(decoder: EventDecoder, now: int) -> None:
    global _worker_decoder
    _worker_decoder = (decoder, now)


def _extract_chunk(lines: list[bytes], first_line: int) -> Extracted:
    decoder, now = _worker_decoder
    return extract(*decoder.decode_many(lines, first_line, now))


def _write(sink: BinaryIO | None, records: list[dict]) -> None:
    if sink is not None and records:
        sink.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


def _open(path: Path | None) -> BinaryIO | nullcontext[None]:
    return open(path, "wb") if path is not None else nullcontext()
