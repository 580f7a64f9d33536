"""What every route works with: the backend (whichever runtime is behind it) and the token
store; and the checks every route makes (token, role, customer scope)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from chainsight.api.auth import Principal, TokenStore, authenticate
from chainsight.api.backend import Backend
from chainsight.api.errors import ApiError


@dataclass
class Context:
    backend: Backend
    tokens: TokenStore
    public_url: str | None = None
    # what else /healthz asks (an ingest beside the API): a problem in one line, or None
    checks: list[Callable[[], str | None]] = field(default_factory=list)

    def health(self) -> str | None:
        """The first problem the backend or a check reports; None when all is well."""
        return self.backend.health() or next(filter(None, (c() for c in self.checks)), None)


def context(connection: HTTPConnection) -> Context:
    return connection.app.state.context


_bearer = HTTPBearer(auto_error=False, description="a token from `chainsight token create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def need(right: str) -> Callable[..., Principal]:
    """A dependency: the request's principal, which must have `right` (401, 403 otherwise)."""

    def check(request: Request, credentials: Credentials) -> Principal:
        if credentials is None and request.headers.get("authorization"):
            raise ApiError(401, "malformed Authorization header: expected Bearer <token>")
        token = None if credentials is None else credentials.credentials
        return authenticate(context(request).tokens, token).check(right)

    return check


def visible(backend: Backend, principal: Principal, shipment_id: str) -> bool:
    """Whether a token may see this shipment (see `scoped`)."""
    return bool(scoped(backend, principal, [{"shipment_id": shipment_id}]))


def scoped(backend: Backend, principal: Principal, records: list[dict]) -> list[dict]:
    """The shipment items or alert records a token may see: all, or for a customer-scoped
    token those of its customers' shipments."""
    if not principal.customers:
        return records
    customers = backend.customers({r["shipment_id"] for r in records
                                   if r.get("shipment_id") is not None})
    return [r for r in records if r.get("shipment_id") is not None
            and principal.sees(customers[r["shipment_id"]])]


def not_found(what: str, key: str) -> ApiError:
    return ApiError(404, f"unknown {what} {key}")
