"""What `chainsight replay` loads when it starts: only what replaying needs."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import fix, order

NOT_FOR_REPLAY = ("scipy.linalg", "fastapi", "uvicorn", "redis", "confluent_kafka", "river",
                  "segno", "jieba", "paho", "concurrent.futures.process", "shapely")


def test_replay_of_a_small_file_loads_only_what_it_needs(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([fix(3), fix(4)]) + b"\n")
    alerts = tmp_path / "alerts.jsonl"
    code = ("import sys, json; from chainsight.cli import main; "
            f"code = main(['replay', {str(events)!r}, '--alerts-out', {str(alerts)!r}]); "
            f"print(json.dumps([code, [m for m in {NOT_FOR_REPLAY!r} if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []]
    assert "replayed 2 events" in done.stderr


def test_numba_started_without_blas_still_runs_kernels_and_scipy_linalg_imports():
    code = ("import sys; from chainsight import jit; jit.start(); "
            "assert 'scipy.linalg' not in sys.modules; "
            "from chainsight.geofence.geodesy import geodesic_m; "
            "assert abs(geodesic_m(0.0, 0.0, 1.0, 0.0) - 111319.49) < 0.01; "
            "import scipy.linalg; print(scipy.linalg.det([[2.0, 0.0], [0.0, 3.0]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "6.0"


def test_the_replay_command_exits_at_once_with_its_outputs_written_and_its_code(tmp_path):
    """`chainsight` ends a replay without taking the interpreter apart: nothing may be lost."""
    command = Path(sys.executable).with_name("chainsight")
    events, state = tmp_path / "events.jsonl", tmp_path / "state.json"
    events.write_bytes(b"\n".join([order("S1", devices=("G1",)), fix(3), fix(4), b"{bad"]) + b"\n")
    done = subprocess.run([command, "replay", events, "--state-out", state,
                           "--dead-letter-out", tmp_path / "dlq.jsonl"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "replayed 3 events" in done.stderr
    assert json.loads(state.read_bytes())["shipments"]["S1"]["last_position"]
    assert len((tmp_path / "dlq.jsonl").read_bytes().splitlines()) == 1
    refused = subprocess.run([command, "replay", tmp_path / "missing.jsonl"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "missing.jsonl" in refused.stderr
