"""Hash chains: append-only logs in which every entry's hash covers the entry before it.

An entry is stored as canonical JSON (sorted keys, no spaces) holding its `seq` and `prev`, the
hash of the entry before it; its own hash is sha256(prev + canonical JSON). Rewriting, removing,
inserting or reordering a stored entry breaks the chain, which `first_broken` finds; cutting
entries off the end shows when the head is compared with a copy kept elsewhere (21 CFR 11.10(e):
changes must not obscure what was recorded before). Anyone can check a chain with a JSON library
and SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha256

import orjson

GENESIS = "0" * 64
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def canonical(entry: dict) -> bytes:
    """The bytes an entry's hash covers: JSON with sorted keys (NumPy arrays as lists)."""
    return orjson.dumps(entry, option=_OPTIONS)


def digest(prev: str, *canonical_entry: bytes | memoryview) -> str:
    """sha256(prev + canonical JSON), the JSON given whole or in consecutive parts."""
    hashed = sha256(prev.encode())
    for part in canonical_entry:
        hashed.update(part)
    return hashed.hexdigest()


def first_broken(entries: Iterable[dict], anchor: str = GENESIS) -> int | None:
    """Verify written entries (each with its `hash`, oldest first, starting after the entry
    whose hash is `anchor`): the position of the first entry that was modified, removed,
    inserted or moved, None when the chain is intact."""
    prev, first_seq = anchor, None
    for i, written in enumerate(entries):
        entry = dict(written)
        hashed = entry.pop("hash", None)
        if first_seq is None:
            first_seq = entry.get("seq")
        if (not isinstance(first_seq, int) or entry.get("seq") != first_seq + i
                or entry.get("prev") != prev or digest(prev, canonical(entry)) != hashed):
            return i
        prev = hashed
    return None
