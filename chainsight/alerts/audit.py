"""The alert audit trail: every transition, who made it, when and what, in a hash chain
(`chainsight.trace.chain`).

Memory holds the recent part of the chain: `forget_before` drops the oldest entries (their records
are in the alert output, which is the durable copy), keeping the hash of the last one dropped as
the anchor the kept entries chain from.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from chainsight.trace.chain import GENESIS, canonical, digest, first_broken


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
        stored = canonical(entry)
        hashed = digest(prev, stored)
        self._entries.append(stored)
        self._hashes.append(hashed)
        self._times.append(at)
        return hashed

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

