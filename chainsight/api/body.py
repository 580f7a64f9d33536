"""Request bodies read with a size cap (the declared Content-Length is not trusted)."""

from __future__ import annotations

import orjson
from fastapi import Request

from chainsight.api.errors import ApiError

MAX_BODY = 10 * 1024 * 1024


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body; 413 as soon as it is longer than `limit` bytes."""
    too_big = ApiError(413, f"request body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> object:
    """A JSON document; 400 with orjson's one-line reason when it is not one."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
