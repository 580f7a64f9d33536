"""Errors as the API answers them: a 4xx status and `{"error": "<one line>"}`."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response


class JSON(Response):
    """A JSON answer, encoded by orjson."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """A refused request: its status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSON:
    return JSON({"error": " ".join(str(message).split())}, status_code=status)


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, else 422; the first problem, on one line."""
    problems = exc.errors()
    first = problems[0] if problems else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    where = ".".join(str(part) for part in first.get("loc", ()))
    return 422, f"{where}: {first['msg']}" if where else first["msg"]


def install(app: FastAPI) -> None:
    """Answer every error, ours and the framework's, in the contract's form."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSON:
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSON:
        return error(*validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSON:
        return error(exc.status_code, exc.detail if isinstance(exc.detail, str)
                     else "request refused")
