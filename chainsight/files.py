"""Files of the data directory: those that hold secrets (token hashes, webhook secrets, link
keys), and append-only logs read back after a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_private_json(path: Path, data: dict) -> None:
    """Replace `path` with `data` as JSON, readable by its owner only, atomically (a temporary
    file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def whole_lines(path: Path) -> bytes:
    """An append-only file's complete lines (b"" when there is no file); an unfinished last
    line, the end of a write a kill cut short, is cut off the file, so appends go on cleanly."""
    if not path.is_file():
        return b""
    text = path.read_bytes()
    complete = text[:text.rfind(b"\n") + 1]
    if len(complete) < len(text):
        os.truncate(path, len(complete))
    return complete
