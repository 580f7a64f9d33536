"""`chainsight replay`: run the live pipeline over a recorded JSON Lines file, as fast as it can."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import orjson

from chainsight.core import Engine, Output

CHUNK_LINES = 65_536


@dataclass
class ReplayResult:
    events: int
    alerts: int
    rejected: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _write(sink: BinaryIO | None, records: list[dict]) -> None:
    if sink is not None and records:
        sink.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


def replay(events: Path, engine: Engine, alerts_out: Path | None = None,
           dead_letter_out: Path | None = None, state_out: Path | None = None) -> ReplayResult:
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

        line_no = 1
        while chunk := list(islice(source, CHUNK_LINES)):
            emit(engine.process(chunk, first_line=line_no))
            line_no += len(chunk)
        emit(engine.flush())
    if state_out is not None:
        state_out.write_bytes(orjson.dumps(engine.snapshot(), option=orjson.OPT_INDENT_2))
    counters = engine.counters
    return ReplayResult(counters["events"], n_alerts, counters["rejected"],
                        time.perf_counter() - started)


def _open(path: Path | None) -> BinaryIO | nullcontext[None]:
    return open(path, "wb") if path is not None else nullcontext()
