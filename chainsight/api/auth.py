"""Roles, rights and bearer tokens.

`RIGHTS` is the contract's table of roles: every route asks for one right. Tokens are random
secrets handed out once; the token store (`tokens.json` in the data directory) keeps only
their SHA-256, with the name, role, and the customers or devices a token is limited to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chainsight.api.errors import ApiError
from chainsight.files import write_private_json

ROLES = ("admin", "dispatcher", "quality", "sales", "device")
READERS = frozenset({"admin", "dispatcher", "quality", "sales"})

# The contract's "Roles and tokens" table: right -> roles that have it.
RIGHTS: dict[str, frozenset[str]] = {
    "events:write": frozenset({"admin", "device"}),
    "shipments:read": READERS,  # also /v1/live and /v1/ask
    "alerts:read": READERS,  # also /v1/alerts/live
    "alerts:act": frozenset({"admin", "quality"}),  # acknowledge, resolve, audit
    "webhooks": frozenset({"admin", "quality"}),
    "fences:read": frozenset({"admin", "dispatcher", "quality"}),
    "fences:write": frozenset({"admin"}),
    "tokens": frozenset({"admin"}),
    "records:read": frozenset({"admin", "quality"}),
    "trace-link": frozenset({"admin", "quality", "sales"}),
}

ADMIN_TOKEN_ENV = "CHAINSIGHT_ADMIN_TOKEN"
DATA_DIR_ENV = "CHAINSIGHT_DATA_DIR"
PREFIX = "cs_"


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, as its token says."""

    name: str
    role: str
    customers: frozenset[str] = frozenset()  # empty: every customer
    devices: frozenset[str] = frozenset()  # empty: every device

    def may(self, right: str) -> bool:
        return self.role in RIGHTS[right]

    def check(self, right: str) -> Principal:
        if not self.may(right):
            raise ApiError(403, f"role {self.role} may not do this ({right})")
        return self

    def sees(self, customer_id: str | None) -> bool:
        """Whether this token may see a shipment of `customer_id`."""
        return not self.customers or customer_id in self.customers


@dataclass
class TokenRecord:
    id: str
    name: str
    role: str
    sha256: str
    created_at: int  # epoch ms
    customers: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def public(self) -> dict:
        """What `token list` shows: everything but the hash."""
        return {k: v for k, v in asdict(self).items() if k != "sha256"}


def default_data_dir() -> Path:
    """`CHAINSIGHT_DATA_DIR`, else the per-user data directory."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "chainsight"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens of one data directory (`tokens.json`), re-read when the file changes so a
    running server sees tokens created or revoked since it started."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "tokens.json"
        self._records: list[TokenRecord] = []
        self._by_hash: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int] | None = None

    def records(self) -> list[TokenRecord]:
        self._reload()
        return list(self._records)

    def create(self, role: str, name: str, customers: Iterable[str] = (),
               devices: Iterable[str] = ()) -> str:
        """A new token (returned in full this once; only its hash is stored)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if devices and role != "device":
            raise ValueError("only device tokens are bound to devices")
        if not name.strip():
            raise ValueError("a token needs a name")
        token_id = secrets.token_hex(4)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        records = self.records()
        records.append(TokenRecord(token_id, name, role, digest(token), int(time.time() * 1000),
                                   sorted(set(customers)), sorted(set(devices))))
        self._write(records)
        return token

    def revoke(self, key: str) -> int:
        """Remove the tokens with this id or name; returns how many."""
        records = self.records()
        kept = [r for r in records if key not in (r.id, r.name)]
        if len(kept) < len(records):
            self._write(kept)
        return len(records) - len(kept)

    def lookup(self, token: str) -> Principal | None:
        admin = os.environ.get(ADMIN_TOKEN_ENV)
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return Principal("admin", "admin")
        self._reload()
        record = self._by_hash.get(digest(token))
        if record is None:
            return None
        return Principal(record.name, record.role, frozenset(record.customers),
                         frozenset(record.devices))

    def _write(self, records: list[TokenRecord]) -> None:
        write_private_json(self.path, {"tokens": [asdict(r) for r in records]})
        self._stamp = None

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._by_hash, self._stamp = [], {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text())
            records = [TokenRecord(**r) for r in data["tokens"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"cannot read the token store {self.path}: {exc}") from None
        self._records, self._stamp = records, stamp
        self._by_hash = {r.sha256: r for r in records}


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header; ApiError 401 otherwise."""
    if not header:
        raise ApiError(401, "missing token: send Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "malformed Authorization header: expected Bearer <token>")
    return token.strip()


def authenticate(store: TokenStore, token: str | None) -> Principal:
    if not token:
        raise ApiError(401, "missing token")
    principal = store.lookup(token)
    if principal is None:
        raise ApiError(401, "unknown or revoked token")
    return principal
