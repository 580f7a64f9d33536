"""What `chainsight replay` loads when it starts: only what replaying needs."""

import json
import subprocess
import sys

from helpers import fix

NOT_FOR_REPLAY = ("scipy.linalg", "fastapi", "uvicorn", "redis", "confluent_kafka", "river",
                  "segno", "jieba", "paho", "multiprocessing.pool", "shapely")


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
