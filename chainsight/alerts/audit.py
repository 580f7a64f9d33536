"""The alert audit trail: every transition, who made it, when and what, in a hash chain.

Entries are append-only. Each is stored as canonical JSON (sorted keys) that includes the hash
of the entry before it; its own hash is sha256(previous hash + canonical JSON). Rewriting,
removing or reordering a stored entry breaks the chain, which `verify` detects; cutting entries
off the end is detected by comparing `head` with a copy kept elsewhere (21 CFR 11.10(e): changes
must not obscure what was recorded before).

Memory holds the recent part of the chain: `forget_before` drops the oldest entries (their records
are in the alert output, which is the durable copy), keeping the hash of the last one dropped as
the anchor the kept entries chain from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from hashlib import sha256

import orjson

GENESIS = "0" * 64


def _digest(prev: str, canonical: bytes) -> str:
    return sha256(prev.encode() + canonical).hexdigest()


class AuditTrail:
    """Append-only, hash-chained log of alert transitions; reads return fresh copies."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._hashes: list[str] = []
        self._times: list[int] = []  # event time of each entry, for forgetting
        self.first_seq = 0  # seq of the oldest entry kept
        self.anchor = GENESIS  # hash of the entry before it

    def append(self, entry: dict, at: int) -> str:
        """Record `entry` (JSON-serialisable; `seq` and `prev` are added to it) of event time
        `at` and return its hash."""
        prev = entry["prev"] = self.head
        entry["seq"] = self.first_seq + len(self._entries)
        canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        digest = _digest(prev, canonical)
        self._entries.append(canonical)
        self._hashes.append(digest)
        self._times.append(at)
        return digest

    def forget_before(self, cutoff: int) -> None:
        """Drop the oldest entries, as long as their event time is before `cutoff`."""
        n = 0
        while n < len(self._times) and self._times[n] < cutoff:
            n += 1
        if n:
            self.anchor = self._hashes[n - 1]
            self.first_seq += n
            del self._entries[:n], self._hashes[:n], self._times[:n]

    def dump_state(self) -> dict:
        return {"entries": self._entries, "hashes": self._hashes, "times": self._times,
                "first_seq": self.first_seq, "anchor": self.anchor}

    def load_state(self, data: dict) -> None:
        """The entries exactly as stored (the hashes are over these bytes)."""
        self._entries = [bytes(e) for e in data["entries"]]
        self._hashes = list(data["hashes"])
        self._times = list(data["times"])
        if not len(self._entries) == len(self._hashes) == len(self._times):
            raise ValueError("audit entries, hashes and times differ in number")
        self.first_seq = data["first_seq"]
        self.anchor = data["anchor"]

    @property
    def head(self) -> str:
        """Hash of the newest entry (keep a copy elsewhere to detect truncation)."""
        return self._hashes[-1] if self._hashes else self.anchor

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int) -> dict:
        return {**orjson.loads(self._entries[i]), "hash": self._hashes[i]}

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def history(self, alert_id: str) -> list[dict]:
        """Every entry of one alert, oldest first."""
        return [e for e in self if e["alert_id"] == alert_id]

    def verify(self) -> bool:
        """True when every entry kept is exactly what was appended, in order, from the anchor."""
        return first_broken(self, self.anchor) is None


def first_broken(entries: Iterable[dict], anchor: str = GENESIS) -> int | None:
    """Verify a written trail (entries as `AuditTrail` yields them, with `hash`, oldest first,
    starting after the entry whose hash is `anchor`): the position of the first entry that was
    modified, removed, inserted or moved, None when the chain is intact."""
    prev, first_seq = anchor, None
    for i, written in enumerate(entries):
        entry = dict(written)
        digest = entry.pop("hash", None)
        if first_seq is None:
            first_seq = entry.get("seq")
        canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        if (entry.get("seq") != first_seq + i or entry.get("prev") != prev
                or _digest(prev, canonical) != digest):
            return i
        prev = digest
    return None
