"""Customer trace links: signed, expiring tokens that open one shipment's customer page.

A token is `base64url(payload) "." base64url(tag)`: the payload is the JSON array
`[key id, shipment id, expiry in epoch seconds]`, the tag its HMAC-SHA256 (first 16 bytes)
under that key. Keys live in the data directory (`trace-keys.json`, owner-readable); the newest
signs, older ones still verify until retired, so keys can be rotated without breaking the
links already printed on parcels. A link encodes `/trace/{token}`, or for a shipment with an
SSCC the GS1 Digital Link form `/00/{sscc}?t={token}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from chainsight.contract.times import iso
from chainsight.files import write_private_json

TAG_BYTES = 16


class LinkRefused(ValueError):
    """A token that does not open a page; the message says why, in one line."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Link:
    shipment_id: str
    expires_at: int  # epoch seconds


class KeyRing:
    """The signing keys, newest last (`trace-keys.json` under `data_dir`, made on first use)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "trace-keys.json"
        self.keys: dict[str, bytes] = {}
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            self.keys = {k["id"]: bytes.fromhex(k["secret"]) for k in stored["keys"]}
        if not self.keys:
            self.rotate()

    def _save(self) -> None:
        write_private_json(self.path, {"keys": [{"id": kid, "secret": secret.hex()}
                                                for kid, secret in self.keys.items()]})

    def rotate(self) -> str:
        """Add a new signing key; returns its id (older keys keep verifying)."""
        kid = secrets.token_hex(4)
        self.keys[kid] = secrets.token_bytes(32)
        self._save()
        return kid

    def retire(self, kid: str) -> None:
        """Stop accepting links signed with `kid` (not the only key)."""
        if kid not in self.keys:
            raise KeyError(f"no trace-link key {kid}")
        if len(self.keys) == 1:
            raise ValueError("cannot retire the only trace-link key; rotate first")
        del self.keys[kid]
        self._save()

    def sign(self, shipment_id: str, expires_at: int) -> str:
        kid = next(reversed(self.keys))
        payload = orjson.dumps([kid, shipment_id, int(expires_at)])
        return f"{_b64(payload)}.{_b64(self._tag(kid, payload))}"

    def _tag(self, kid: str, payload: bytes) -> bytes:
        return hmac.new(self.keys[kid], payload, hashlib.sha256).digest()[:TAG_BYTES]

    def open(self, token: str, now_s: float) -> Link:
        """The link a token stands for; LinkRefused when it is malformed, modified, signed by
        another server or a retired key, or expired."""
        try:
            payload_text, tag_text = token.split(".")
            payload, tag = _unb64(payload_text), _unb64(tag_text)
            kid, shipment_id, expires_at = orjson.loads(payload)
            if not (isinstance(kid, str) and isinstance(shipment_id, str)
                    and type(expires_at) is int):
                raise ValueError
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise LinkRefused("this trace link is not valid (it is damaged or incomplete)") \
                from None
        if kid not in self.keys or not hmac.compare_digest(self._tag(kid, payload), tag):
            raise LinkRefused("this trace link was altered or was not issued by this server")
        if expires_at <= now_s:
            raise LinkRefused(f"this trace link expired on {iso(expires_at * 1000)}")
        return Link(shipment_id, expires_at)


def link_url(base_url: str, token: str, sscc: str | None = None) -> str:
    """The absolute URL a QR code encodes."""
    base = base_url.rstrip("/")
    if sscc:
        return f"{base}/00/{sscc}?t={token}"
    return f"{base}/trace/{token}"


def qr_svg(url: str) -> str:
    """The URL as a QR code, an SVG document."""
    import segno

    return segno.make(url, error="m").svg_inline(scale=4, border=2)
