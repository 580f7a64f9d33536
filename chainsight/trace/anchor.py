"""Anchoring: the heads of every shipment's record combined in one Merkle root, so that one
published hash vouches for every record up to that moment.

Leaves are `canonical([shipment_id, entries, head])`, sorted by shipment id. Hashes follow
RFC 6962 (Certificate Transparency): a leaf is sha256(0x00 + leaf), a node sha256(0x01 + left +
right), and a tree of n leaves splits at the largest power of two below n. An inclusion proof
is the list of sibling hashes from the leaf up, each with the side it is on.
"""

from __future__ import annotations

from hashlib import sha256

from chainsight.trace.chain import canonical


def leaf(shipment_id: str, entries: int, head: str) -> bytes:
    return canonical([shipment_id, entries, head])


def _leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node(_root(hashes[:k]), _root(hashes[k:]))


def merkle_root(leaves: list[bytes]) -> str:
    """The root (hex) of the leaves in their order; sha256 of nothing for none."""
    if not leaves:
        return sha256(b"").hexdigest()
    return _root([_leaf_hash(x) for x in leaves]).hex()


def inclusion_proof(leaves: list[bytes], index: int) -> list[list[str]]:
    """Sibling hashes from leaf `index` up to the root: `[side, hex]`, side "L" or "R"."""
    hashes = [_leaf_hash(x) for x in leaves]
    proof: list[list[str]] = []
    while len(hashes) > 1:
        k = _split(len(hashes))
        if index < k:
            proof.append(["R", _root(hashes[k:]).hex()])
            hashes = hashes[:k]
        else:
            proof.append(["L", _root(hashes[:k]).hex()])
            hashes, index = hashes[k:], index - k
    return proof[::-1]


def verify_inclusion(data: bytes, proof: list[list[str]], root: str) -> bool:
    """Whether `data` is a leaf of the tree whose root is `root`, by its proof."""
    current = _leaf_hash(data)
    for side, sibling in proof:
        other = bytes.fromhex(sibling)
        current = _node(other, current) if side == "L" else _node(current, other)
    return current.hex() == root
