"""`chainsight demo` serves the API over its simulated fleet, with a working link per role."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time

import httpx
from api_server import free_port

from chainsight.api.auth import RIGHTS

LINK = re.compile(r"^\s+(\w+)\s+(http://127\.0\.0\.1:(\d+)/docs#token=(\S+))$")


def test_demo_prints_a_link_per_role_that_works_while_it_runs(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chainsight.cli", "demo", "--duration", "8",
                             "--port", str(port), "--shipments", "30", "--data-dir",
                             str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        links: dict[str, tuple[str, str]] = {}
        deadline = time.monotonic() + 60
        while len(links) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            try:
                match = LINK.match(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                continue
            if match:
                assert int(match[3]) == port
                links[match[1]] = (match[2], match[4])
        assert set(links) == {"admin", "dispatcher", "quality", "sales"}
        for role, (link, token) in links.items():
            assert httpx.get(link.split("#")[0]).status_code == 200  # the docs page
            headers = {"Authorization": f"Bearer {token}"}
            shipments = httpx.get(f"http://127.0.0.1:{port}/v1/shipments", headers=headers)
            assert shipments.status_code == 200 and isinstance(shipments.json(), list)
            fences = httpx.get(f"http://127.0.0.1:{port}/v1/fences", headers=headers)
            assert fences.status_code == (200 if role in RIGHTS["fences:read"] else 403), role
        assert proc.wait(30) == 0
        assert any(" alert transitions" in line for line in proc.stderr.read().splitlines())
    finally:
        proc.kill()
        proc.wait(10)
    tokens = (tmp_path / "tokens.json").read_text()
    assert tokens.count('"demo-') == 4 and links["admin"][1] not in tokens  # hashed only
