"""The shipments' tamper-evident records as a runtime keeps them (`chainsight.trace.record`),
and the anchors that vouch for them all.

`RecordFile` appends each entry as one line of canonical JSON with its hash (`record.jsonl` in
the data directory) and indexes the lines by shipment; without a path it keeps them in memory.
A runtime that replays its log after a restart makes the same entries again: those already kept
(a shipment's `seq` below what is written) are not written twice, and a line a kill cut short is
written anew.
"""

from __future__ import annotations

import bisect
import os
import time
from pathlib import Path

import orjson

from chainsight.contract.times import iso
from chainsight.files import whole_lines
from chainsight.trace.anchor import inclusion_proof, leaf, merkle_root
from chainsight.trace.chain import GENESIS, canonical, digest
from chainsight.trace.record import Written


class RecordFile:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lines: dict[str, list[bytes | int]] = {}  # shipment -> lines, or their offsets
        self._fd = -1
        self._size = 0
        if path is not None:
            self._open(path)

    def _open(self, path: Path) -> None:
        offset = 0
        for line in whole_lines(path).splitlines(keepends=True):
            self._lines.setdefault(orjson.loads(line)["shipment_id"], []).append(offset)
            offset += len(line)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._size = offset

    def write(self, entries: list[Written]) -> None:
        """Keep new entries (those of a shipment's chain not kept yet, in chain order)."""
        chunks = []
        for entry in entries:
            kept = self._lines.setdefault(entry.shipment_id, [])
            if entry.seq < len(kept):
                continue
            line = entry.line + b"\n"
            if self._fd < 0:
                kept.append(line)
                continue
            kept.append(self._size)
            self._size += len(line)
            chunks.append(line)
        if chunks:
            data = memoryview(b"".join(chunks))
            while data:
                data = data[os.pwrite(self._fd, data, self._size - len(data)):]

    def entries(self, shipment_id: str) -> list[dict]:
        """A shipment's record as kept, oldest first (empty for one never recorded)."""
        kept = self._lines.get(shipment_id, [])
        if self._fd < 0:
            return [orjson.loads(line) for line in kept]
        out = []
        for start in kept:
            line = b""
            while not line.endswith(b"\n"):
                line += os.pread(self._fd, 65536, start + len(line))
            out.append(orjson.loads(line[:line.index(b"\n")]))
        return out

    def sync(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Anchors:
    """The anchor log (`chainsight.trace.anchor`): every `every_s` seconds, the Merkle root of
    all shipments' record heads, appended to a hash chain (`anchors.jsonl` under `directory`,
    with each anchor's leaves in `anchor-N.leaves`); in memory without a directory. Publishing
    an anchor's root elsewhere lets anyone check that no record was rewritten since."""

    def __init__(self, directory: Path | None = None, every_s: float = 3600.0) -> None:
        self.dir = directory
        self.every_s = every_s
        self.entries: list[dict] = []
        self._leaves: dict[int, list[bytes]] = {}  # in memory only
        self._last = time.monotonic()
        if directory is not None:
            self.entries = [orjson.loads(line) for line in
                            whole_lines(directory / "anchors.jsonl").splitlines()]

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def anchor(self, heads: list[tuple[str, int, str]], at: int) -> dict:
        """Anchor these (shipment id, entries, head) now; returns the anchor log's entry."""
        self._last = time.monotonic()
        leaves = [leaf(*h) for h in sorted(heads)]
        prev = self.entries[-1]["hash"] if self.entries else GENESIS
        entry = {"seq": len(self.entries), "prev": prev, "at": iso(at),
                 "root": merkle_root(leaves), "shipments": len(leaves)}
        entry["hash"] = digest(prev, canonical(entry))
        if self.dir is None:
            self._leaves[entry["seq"]] = leaves
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / f"anchor-{entry['seq']}.leaves").write_bytes(b"\n".join(leaves))
            with open(self.dir / "anchors.jsonl", "ab") as f:
                f.write(orjson.dumps(entry) + b"\n")
        self.entries.append(entry)
        return entry

    def proof(self, shipment_id: str) -> dict | None:
        """The newest anchor that holds the shipment: the anchor, the leaf (shipment id,
        entries, head) and its inclusion proof; None when none does."""
        for entry in reversed(self.entries):
            leaves = self._read(entry["seq"])  # sorted by shipment id
            i = bisect.bisect_left(leaves, shipment_id, key=lambda data: orjson.loads(data)[0])
            if i < len(leaves) and orjson.loads(leaves[i])[0] == shipment_id:
                return {"anchor": entry, "leaf": orjson.loads(leaves[i]),
                        "proof": inclusion_proof(leaves, i)}
        return None

    def _read(self, seq: int) -> list[bytes]:
        if self.dir is None:
            return self._leaves.get(seq, [])
        path = self.dir / f"anchor-{seq}.leaves"
        return path.read_bytes().split(b"\n") if path.is_file() else []
