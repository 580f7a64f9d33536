"""The alert audit trail: every transition, who made it, when and what, in a hash chain.

Entries are append-only. Each is stored as canonical JSON (sorted keys) that includes the hash
of the entry before it; its own hash is sha256(previous hash + canonical JSON). Rewriting,
removing or reordering a stored entry breaks the chain, which `verify` detects; cutting entries
off the end is detected by comparing `head` with a copy kept elsewhere (21 CFR 11.10(e): changes
must not obscure what was recorded before).
"""

from __future__ import annotations

from collections.abc import Iterator
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

    def append(self, entry: dict) -> str:
        """Record `entry` (JSON-serialisable; `seq` and `prev` are added to it) and return its
        hash."""
        prev = entry["prev"] = self.head
        entry["seq"] = len(self._entries)
        canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        digest = _digest(prev, canonical)
        self._entries.append(canonical)
        self._hashes.append(digest)
        return digest

    @property
    def head(self) -> str:
        """Hash of the newest entry (keep a copy elsewhere to detect truncation)."""
        return self._hashes[-1] if self._hashes else GENESIS

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
        """True when every stored entry is exactly what was appended, in order."""
        prev = GENESIS
        for i, (canonical, digest) in enumerate(zip(self._entries, self._hashes, strict=True)):
            entry = orjson.loads(canonical)
            if entry.get("seq") != i or entry.get("prev") != prev:
                return False
            if _digest(prev, canonical) != digest:
                return False
            prev = digest
        return True
