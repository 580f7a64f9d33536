"""`chainsight replay`: run the live pipeline over a recorded JSON Lines file, as fast as it can.

The file is read in byte ranges of whole lines. Decoding a range into columns is stateless, so
with `workers` > 0 it runs in worker processes a few ranges ahead, while this process interns
ids, drops duplicates, reorders and runs the rules. Ranges are consumed in file order, so the
output is the same as in one process.
"""

from __future__ import annotations

import codecs
import gc
import os
import stat
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import orjson

from chainsight.contract.events import EventDecoder
from chainsight.contract.times import now_ms
from chainsight.engine.core import Engine, Output
from chainsight.ingest.columnar import Extracted, decode_jsonl
from chainsight.runtimes import shared
from chainsight.runtimes.heap import keep_freed_memory
from chainsight.trace.record import event_texts

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

LIVE_BATCH_LINES = 500  # a live runtime's batches: what it publishes comes this soon
CHUNK_BYTES = 16 << 20  # bytes per engine call (and per worker task)
FIRST_CHUNK_BYTES = 1 << 20
RECORD_BUFFER = 1 << 20  # the record's lines are many and long (a block of readings each)
DECODE_NICENESS = 10
POOL_MIN_BYTES = 16 << 20  # a smaller file is decoded before a pool's workers would help
_worker: tuple[Path, EventDecoder, int, bool]  # each worker's file, decoder, "now", record
_parcels: str  # each decode process's directory for its batches' parcels


@dataclass
class ReplayResult:
    events: int
    alerts: int
    rejected: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def default_workers(file_bytes: int | None = None) -> int:
    """Decode workers worth starting on this machine (0: decode in this process), for a file
    of `file_bytes` if given: none for a small file (starting them costs ~0.05 s or more)."""
    if file_bytes is not None and file_bytes < POOL_MIN_BYTES:
        return 0
    return 2 if (os.cpu_count() or 1) >= 2 else 0


def check_paths(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    """Refuse, with a one-line ValueError and before anything is written, an input that cannot
    be read, an output that cannot be created, or an output that is an input or another output.
    Keys name the paths in messages (e.g. "the input", "--alerts-out")."""
    for path in inputs.values():
        _check_readable(path)
    named = [*inputs.items(), *outputs.items()]
    for i in range(len(inputs), len(named)):
        name, path = named[i]
        for other_name, other in named[:i]:
            if _same_file(path, other):
                raise ValueError(f"{name} {path} is the same file as {other_name} {other}")
    for path in outputs.values():
        _check_writable(path)


def _check_readable(path: Path) -> None:
    """Refuse (ValueError) a path that is not a readable regular file."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ValueError(f"cannot read {path}: is a directory")
        if not stat.S_ISREG(mode):
            raise ValueError(f"cannot read {path}: not a regular file")
        open(path, "rb").close()  # whether it opens (permissions)
    except OSError as exc:
        raise ValueError(_read_error(path, exc)) from None


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"cannot write {path}: is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: no such directory {parent}")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise ValueError(f"cannot write {path}: permission denied")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare what can be compared
        if a.absolute() == b.absolute():
            return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _read_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror.lower() if exc.strerror else str(exc)
    return f"cannot read {path}: {reason}"


def replay(events: Path, engine: Engine, alerts_out: Path | None = None,
           dead_letter_out: Path | None = None, state_out: Path | None = None,
           workers: int = 0, live_alerts_out: Path | None = None,
           record_out: Path | None = None, eta_out: Path | None = None,
           batches: Iterator[Extracted] | None = None) -> ReplayResult:
    """Replay `events` through `engine`, writing the contract's output files: the settled
    alert stream, the ETAs published, and with `live_alerts_out` (a live engine's) the live
    stream as a live runtime would have published it, each record with `line`, the input
    lines consumed; with `record_out` (an engine that records) the entries of the shipments'
    records. `batches`: the file's, from `decoding` started earlier (else started here)."""
    started = time.perf_counter()
    n_alerts = consumed = 0
    with _open(alerts_out) as alerts, _open(dead_letter_out) as dead, \
            _open(live_alerts_out) as live, _open(record_out, RECORD_BUFFER) as record, \
            _open(eta_out) as etas:

        def emit(out: Output) -> None:
            nonlocal n_alerts
            n_alerts += len(out.settled)
            _write(alerts, out.settled)
            _write(dead, out.dead_letters)
            _write(live, [{**r, "line": consumed} for r in out.alerts])
            if record is not None:  # the lines through the buffer: no copy of them all
                record.writelines(part for e in out.record for part in (e.line, b"\n"))
            if etas is not None and out.etas:
                etas.write(b"".join(batch.jsonl() for batch in out.etas))

        if live_alerts_out is None:
            with nullcontext(batches) if batches is not None else \
                    decoding(events, engine.decoder, workers, engine.recording) as decoded:
                for batch in decoded:
                    emit(engine.process_extracted(batch))
        else:
            keep_freed_memory()
            for first, lines in _line_batches(events, LIVE_BATCH_LINES):
                consumed = first + len(lines) - 1
                emit(engine.process(lines, first_line=first))
        emit(engine.flush())
    if state_out is not None:
        state_out.write_bytes(orjson.dumps(engine.snapshot(), option=orjson.OPT_INDENT_2))
    counters = engine.counters
    return ReplayResult(counters["events"], n_alerts, counters["rejected"],
                        time.perf_counter() - started)


def _line_batches(path: Path, size: int) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines) in batches of `size` lines, a UTF-8 byte-order mark
    at the start of the file left out."""
    try:
        with open(path, "rb") as f:
            first, batch = 1, list(islice(f, size))
            if batch and batch[0].startswith(codecs.BOM_UTF8):
                batch[0] = batch[0][len(codecs.BOM_UTF8):]
            while batch:
                yield first, [line.rstrip(b"\r\n") for line in batch]
                first += len(batch)
                batch = list(islice(f, size))
    except OSError as exc:
        raise OSError(_read_error(path, exc)) from None


@contextmanager
def decoding(path: Path, decoder: EventDecoder, workers: int,
             record: bool = False) -> Iterator[Iterator[Extracted]]:
    """The file's ranges in order, decoded here or by `workers` processes a few ranges ahead,
    with the dead letters' lines numbered from the start of the file; with `record`, with
    the JSON the shipments' records hold of their scans and orders (made there too). Workers
    start at once, so a caller can get its engine ready while they decode the first ranges;
    they stop on leaving."""
    keep_freed_memory()  # before forking: the workers' heaps too
    if workers == 0:
        _start_worker(path, decoder, now_ms(), record)
        yield _numbered(_extract_range(*byte_range) for byte_range in _byte_ranges(path))
        return
    import multiprocessing  # here: a small file's replay does without them
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with shared.directory() as parcels:
        # an executor, not a multiprocessing.Pool: the Pool's thread that watches its workers
        # wakes for as long as a result is being read, ~3,000 times a replay (~0.07 s of CPU)
        pool = ProcessPoolExecutor(workers, context, initializer=_start_decode_process,
                                   initargs=(path, decoder, now_ms(), record, parcels))
        try:
            ranges = _byte_ranges(path)
            ahead = deque(pool.submit(_extract_parcel, *byte_range)
                          for byte_range in islice(ranges, 2 * workers + 1))
            yield _numbered(_in_order(pool, ranges, ahead))
        finally:
            pool.shutdown(cancel_futures=True)


def _in_order(pool: Executor, ranges: Iterator[tuple[int, int]],
              ahead: deque[Future]) -> Iterator[tuple[Extracted, int]]:
    """The decoded ranges in file order, the rest of `ranges` given to the pool as they go."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        for byte_range in ranges:
            ahead.append(pool.submit(_extract_parcel, *byte_range))
            yield shared.take(ahead.popleft().result())
        while ahead:
            yield shared.take(ahead.popleft().result())
    except BrokenProcessPool:
        raise OSError("a decode process died (killed, or out of memory?); "
                      "--workers 0 decodes in this process") from None


def _numbered(ranges: Iterator[tuple[Extracted, int]]) -> Iterator[Extracted]:
    """Batches with their dead letters' lines numbered from the start of the file."""
    lines_before = 0
    for batch, n_lines in ranges:
        for dead in batch.dead_letters:
            dead["line"] += lines_before
        lines_before += n_lines
        yield batch


def _byte_ranges(path: Path) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges, each ending at a line break: small at first, so the engine
    starts early, then doubling up to about CHUNK_BYTES. A UTF-8 byte-order mark at the start
    of the file is left out (it is not part of line 1's event)."""
    try:
        size = path.stat().st_size
        step = FIRST_CHUNK_BYTES
        with open(path, "rb") as f:
            bom = codecs.BOM_UTF8
            start = len(bom) if f.read(len(bom)) == bom else 0
            while start < size:
                step = min(step, CHUNK_BYTES)
                f.seek(min(start + step, size))
                step *= 2
                f.readline()  # on to the end of the line the range would cut
                end = min(f.tell(), size)
                yield start, end
                start = end
    except OSError as exc:
        raise OSError(_read_error(path, exc)) from None


def _start_decode_process(path: Path, decoder: EventDecoder, now: int, record: bool,
                          parcels: str) -> None:
    """Decode processes yield the CPU to the engine's process, the pipeline's bottleneck, when
    both want it (they only run ahead of it), and send their batches as parcels
    (`chainsight.runtimes.shared`) made in the directory `parcels`."""
    global _parcels
    os.nice(DECODE_NICENESS)
    gc.enable()  # forked, maybe, while a command started with collection off
    _start_worker(path, decoder, now, record)
    _parcels = parcels


def _start_worker(path: Path, decoder: EventDecoder, now: int, record: bool = False) -> None:
    """Nothing here may fail: an executor whose initializer raises prints a traceback and
    breaks. The file is opened by each task, whose error reaches the caller."""
    global _worker
    _worker = (path, decoder, now, record)


def _extract_parcel(start: int, end: int) -> shared.Parcel:
    """`_extract_range` in a decode process, as a parcel."""
    return shared.put(_extract_range(start, end), _parcels)


def _extract_range(start: int, end: int) -> tuple[Extracted, int]:
    """Decode the lines in bytes [start, end); dead letters are numbered from 1 in the range."""
    path, decoder, now, record = _worker
    try:
        with open(path, "rb") as source:
            source.seek(start)
            data = source.read(end - start)
    except OSError as exc:
        raise OSError(_read_error(path, exc)) from None
    batch, n_lines = decode_jsonl(decoder, data, 1, now)
    if record:  # here, off the engine's process
        batch.business_json = event_texts(list(batch.business), list(batch.business.values()))
    return batch, n_lines


def _write(sink: BinaryIO | None, records: list[dict]) -> None:
    if sink is not None and records:
        sink.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


def _open(path: Path | None, buffering: int = -1) -> BinaryIO | nullcontext[None]:
    return open(path, "wb", buffering) if path is not None else nullcontext()
