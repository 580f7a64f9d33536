"""Files of the data directory that hold secrets (token hashes, webhook secrets, link keys)."""

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
