"""A real uvicorn server on a free port of 127.0.0.1, in a background thread, for API tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from chainsight.api.app import create_app
from chainsight.api.auth import TokenStore
from chainsight.engine.core import Engine
from chainsight.runtimes.embedded import EmbeddedRuntime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app, port: int | None = None) -> Iterator[str]:
    """Serve `app` (on `port`, else a free one); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def api(data_dir, engine=None, **options) -> Iterator[tuple[str, EmbeddedRuntime, object]]:
    """A live engine in an embedded runtime (wall clock) behind the API: (url, runtime, app)."""
    runtime = EmbeddedRuntime(engine or Engine(live=True)).start()
    app = create_app(runtime, TokenStore(data_dir), **options)
    try:
        with running(app) as url:
            yield url, runtime, app
    finally:
        runtime.stop()
