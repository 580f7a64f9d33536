"""The embedded runtime's durable state in a directory: snapshots and an append-only log.

`snapshot-N.bin` is the engine's state (`Engine.dump_state()`, plus the geofences last put
live) in the Kafka runtime's versioned format (`snapshots.encode`); `log-N.jsonl` holds every
engine call that changes state made after it, one JSON object a line: `{"lines": [...],
"now": ms}` (events; a line that is not UTF-8 as `{"base64": ...}`), `{"command": {...}}` (a
user command), `{"advance": ms}` (a tick), `{"flush": true}`. A record is written before the
call it records, and `sync` makes every record written so far durable with one fsync, shared
by the callers waiting on it. Taking a snapshot starts log N+1 at once (under the runtime
lock, so nothing falls between); the older files go once snapshot-(N+1) is renamed into place.
`recover` loads the newest snapshot and replays every log from its number up, in order, through
the same engine calls (the engine is deterministic for the same calls and `now`s).
`audit.jsonl` is the audit trail as written out (`AuditFile`), `record.jsonl` the shipments'
tamper-evident records (`RecordFile`), `anchors.jsonl` the anchors of their heads (`Anchors`).
The shipments' recent events (`History`) are in the snapshots and remembered again from the log.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from pathlib import Path

import msgspec
import orjson

from chainsight.contract.commands import (
    Command,
    CommandRefused,
    ReplaceFences,
    decode_command,
    encode_command,
)
from chainsight.engine.core import Engine, Output
from chainsight.files import whole_lines
from chainsight.runtimes.history import History
from chainsight.runtimes.kafka.snapshots import SnapshotError, decode, encode
from chainsight.runtimes.records import Anchors, RecordFile

log = logging.getLogger(__name__)
_NAME = re.compile(r"(snapshot|log)-(\d{6,})\.(bin|jsonl)")


class Direct:
    """Engine calls as they are (an in-memory runtime): the interface `Store` logs. The
    shipments' records and recent events are kept in memory."""

    def __init__(self, anchor_every_s: float = 3600.0) -> None:
        self.records = RecordFile()
        self.anchors = Anchors(None, anchor_every_s)
        self.history = History()

    def process(self, engine: Engine, lines: list[bytes], now: int) -> Output:
        out = engine.process(lines, now=now)
        self.history.remember(engine, lines, out)
        return self._keep(out)

    def apply(self, engine: Engine, command: Command) -> Output:
        return self._keep(engine.apply(command))

    def advance(self, engine: Engine, now: int) -> Output:
        return self._keep(engine.advance(now))

    def flush(self, engine: Engine) -> Output:
        return self._keep(engine.flush())

    def _keep(self, out: Output) -> Output:
        """Write out what the call added to the records (and, in a store, the audit trail)."""
        self.records.write(out.record)
        return out

    def anchor(self, engine: Engine, now: int) -> None:
        """Anchor every record's head when an anchor is due."""
        if self.anchors.due():
            self.anchors.anchor(engine.record_heads(), now)

    def sync(self) -> None:
        """Make every call made so far durable (nothing to do in memory)."""

    def due(self) -> bool:
        """Whether a snapshot is due."""
        return False

    def snapshot(self, engine: Engine) -> None:
        """Write the engine's state (call with the runtime lock held)."""


class Store(Direct):
    """Snapshots and a log of engine calls in `directory` (see the module's docstring)."""

    def __init__(self, directory: Path, snapshot_every_s: float = 60.0,
                 snapshot_every: int = 10_000, anchor_every_s: float = 3600.0) -> None:
        self.dir = Path(directory)
        self.snapshot_every_s = snapshot_every_s
        self.snapshot_every = snapshot_every
        self.fences: ReplaceFences | None = None  # the geofences last put live
        self.number = 0  # of the current log
        self._fd = -1
        self._written = self._synced = 0  # records written, records known durable
        self._since = 0  # records since the last snapshot
        self._snapshot_at = time.monotonic()
        self._sync_lock = threading.Lock()  # one fsync (or log switch) at a time
        self.audit = AuditFile(self.dir / "audit.jsonl")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records = RecordFile(self.dir / "record.jsonl")
        self.anchors = Anchors(self.dir, anchor_every_s)
        self.history = History()

    # --- engine calls, logged first ---------------------------------------------------------

    def process(self, engine: Engine, lines: list[bytes], now: int) -> Output:
        self._append({"lines": [_text(line) for line in lines], "now": now})
        return super().process(engine, lines, now)

    def apply(self, engine: Engine, command: Command) -> Output:
        self._append(b'{"command":' + encode_command(command) + b"}")
        out = engine.apply(command)  # a refused command is refused again on replay
        if type(command) is ReplaceFences:
            self.fences = command
        return self._keep(out)

    def advance(self, engine: Engine, now: int) -> Output:
        self._append({"advance": now})
        return self._keep(engine.advance(now))

    def flush(self, engine: Engine) -> Output:
        self._append({"flush": True})
        return self._keep(engine.flush())

    def _keep(self, out: Output) -> Output:
        self.audit.write(out)
        return super()._keep(out)

    def _append(self, record: dict | bytes) -> None:
        data = (record if isinstance(record, bytes) else orjson.dumps(record)) + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._written += 1
        self._since += 1

    def sync(self) -> None:
        """fsync the log unless another caller's fsync already covered what was written."""
        target = self._written
        with self._sync_lock:
            if self._synced >= target:
                return
            target = self._written
            os.fsync(self._fd)
            self._synced = target

    # --- snapshots --------------------------------------------------------------------------

    def due(self) -> bool:
        return self._since >= self.snapshot_every or (
            self._since > 0 and time.monotonic() - self._snapshot_at >= self.snapshot_every_s)

    def snapshot(self, engine: Engine) -> None:
        self.records.sync()  # the entries made before it are not made again by a recovery
        state: dict = {"engine": engine.dump_state(), "history": self.history.dump()}
        if self.fences is not None:
            state["fences"] = msgspec.to_builtins(self.fences)
        blob = encode(state)
        number = self.number + 1
        self._open_log(number)
        path = self._path("snapshot", number)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._sync_dir()
        for old_number, old in self._files():
            if old_number < number:
                old.unlink(missing_ok=True)
        self._since, self._snapshot_at = 0, time.monotonic()

    def _open_log(self, number: int) -> None:
        fd = os.open(self._path("log", number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sync_dir()
        with self._sync_lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
            self._fd, self._synced, self.number = fd, self._written, number

    def close(self) -> None:
        self.records.sync()
        self.records.close()
        with self._sync_lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    # --- recovery ---------------------------------------------------------------------------

    def recover(self, engine: Engine) -> int:
        """Bring a fresh engine (built from the configuration) to the state the directory
        holds, then start a new snapshot and log; returns the log records replayed.
        SnapshotError (one line) when the state cannot be read."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("snapshot-*.tmp"):  # a snapshot cut short: never renamed
            tmp.unlink()
        files = self._files()
        snapshots = [n for n, p in files if p.suffix == ".bin"]
        start = max(snapshots, default=0)
        if snapshots:
            path = self._path("snapshot", start)
            try:
                self._load(engine, decode(path.read_bytes()))
            except SnapshotError as exc:
                raise SnapshotError(f"{path}: {exc}") from None
        replayed = 0
        for number, path in files:
            if path.suffix == ".jsonl" and number >= start:
                replayed += self._replay(engine, path)
        self.number = max((n for n, _ in files), default=0)
        self.snapshot(engine)
        return replayed

    def _load(self, engine: Engine, state: dict) -> None:
        try:
            if state.get("fences") is not None:
                self.fences = msgspec.convert(state["fences"], ReplaceFences)
                engine.apply(self.fences)
            engine.load_state(state["engine"])
            self.history.load(state.get("history", {}))  # none in a snapshot made before it
        except (KeyError, IndexError, TypeError, ValueError, msgspec.ValidationError) as exc:
            raise SnapshotError("snapshot does not fit this engine "
                                f"({type(exc).__name__}: {exc})".splitlines()[0]) from None

    def _replay(self, engine: Engine, path: Path) -> int:
        """Replay one log; a damaged last line (a write cut short) is skipped with a warning,
        a damaged line before the end is an error."""
        lines = path.read_bytes().split(b"\n")
        complete = lines[:-1] if lines[-1] == b"" else lines
        for i, line in enumerate(complete):
            try:
                self._call(engine, orjson.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON errors too
                if i == len(complete) - 1:
                    log.warning("%s: skipped its last record, cut short (%s)", path,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    return i
                raise SnapshotError(f"{path} line {i + 1} is damaged "
                                    f"({type(exc).__name__}: {exc})".splitlines()[0]) from None
        return len(complete)

    def _call(self, engine: Engine, record: dict) -> None:
        """Replay one logged call (its audit entries not yet written are written now)."""
        if "lines" in record:
            lines = [_bytes(line) for line in record["lines"]]
            out = engine.process(lines, now=int(record["now"]))
            self.history.remember(engine, lines, out)
        elif "command" in record:
            command = decode_command(orjson.dumps(record["command"]))
            try:
                out = engine.apply(command)
            except CommandRefused:
                return  # refused when it was made, too
            if type(command) is ReplaceFences:
                self.fences = command
        elif "advance" in record:
            out = engine.advance(int(record["advance"]))
        elif record.get("flush") is True:
            out = engine.flush()
        else:
            raise ValueError(f"unknown record {sorted(record)}")
        self.audit.write(out)

    # --- files ------------------------------------------------------------------------------

    def _path(self, kind: str, number: int) -> Path:
        return self.dir / f"{kind}-{number:06d}.{'bin' if kind == 'snapshot' else 'jsonl'}"

    def _files(self) -> list[tuple[int, Path]]:
        """The snapshots and logs, by number."""
        found = [(int(m[2]), self.dir / m[0]) for m in map(_NAME.fullmatch, os.listdir(self.dir))
                 if m is not None]
        return sorted(found)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AuditFile:
    """The audit trail as written out (JSON Lines, chain order): every transition and user
    action, with its hash, for `chainsight.trace.chain.first_broken` to verify. Replaying
    the log after a restart makes the same entries again; those already written (by their
    `seq`) are not written twice, and a line cut short by a kill is written anew."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_seq = -1
        complete = whole_lines(path)
        if complete:
            self.last_seq = orjson.loads(complete.splitlines()[-1])["seq"]

    def write(self, out: Output) -> Output:
        new = [entry for entry in out.audit if entry["seq"] > self.last_seq]
        if new:
            with open(self.path, "ab") as f:
                f.write(b"".join(orjson.dumps(entry) + b"\n" for entry in new))
            self.last_seq = new[-1]["seq"]
        return out

    def entries(self) -> list[dict]:
        """What was written, oldest first."""
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines()]


def _text(line: bytes) -> str | dict:
    try:
        return line.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(line).decode()}


def _bytes(line: str | dict) -> bytes:
    return line.encode() if isinstance(line, str) else base64.b64decode(line["base64"])
