"""`chainsight demo` as a subprocess on a free port, with the links it prints per role."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from api_server import free_port

LINK = re.compile(r"^\s+(\w+)\s+(http://127\.0\.0\.1:(\d+)(/\S*)#token=(\S+))$")


@dataclass
class Demo:
    proc: subprocess.Popen
    base: str  # http://127.0.0.1:PORT
    links: dict[str, str]  # role -> link
    tokens: dict[str, str]  # role -> token
    pages: dict[str, str]  # role -> the path its link opens


@contextmanager
def running_demo(data_dir: Path, *options: str, timeout_s: float = 60) -> Iterator[Demo]:
    """Run `chainsight demo --port P --data-dir DIR OPTIONS...`; yields once it has printed a
    link for each of its four roles. Killed on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "demo", "--port", str(port),
                             "--data-dir", str(data_dir), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        demo = Demo(proc, f"http://127.0.0.1:{port}", {}, {}, {})
        deadline = time.monotonic() + timeout_s
        while len(demo.links) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            try:
                match = LINK.match(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                continue
            if match:
                assert int(match[3]) == port
                role = match[1]
                demo.links[role], demo.pages[role], demo.tokens[role] = match[2], match[4], match[5]
        yield demo
    finally:
        proc.kill()
        proc.wait(10)
