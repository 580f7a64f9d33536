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
from dataclasses import dataclass, field
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
    err: list[str] = field(default_factory=list)  # what it printed on stderr so far
    err_reader: threading.Thread | None = None

    def stderr(self) -> str:
        """Its stderr so far (all of it once it has exited)."""
        if self.proc.poll() is not None and self.err_reader is not None:
            self.err_reader.join(10)
        return "".join(self.err)


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
        demo.err_reader = threading.Thread(target=lambda: demo.err.extend(proc.stderr),
                                           daemon=True)
        demo.err_reader.start()
        deadline = time.monotonic() + timeout_s
        while len(demo.links) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, demo.stderr()
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
