"""Parcels: objects whose buffers cross processes in shared-memory files."""

import os

import numpy as np

from chainsight.runtimes import shared


def test_a_parcel_brings_back_the_object_with_its_buffers_and_removes_its_file(tmp_path):
    columns = {"ts": np.arange(7, dtype=np.int64), "none": np.empty(0, np.float64),
               "kind": np.array([1, 2, 3], np.int8), "text": b"scan", "n": 3}
    parcel = shared.put(columns, str(tmp_path))
    assert len(parcel.head) < 400 and os.path.getsize(parcel.name) == 64 + 3
    back = shared.take(parcel)
    assert back.keys() == columns.keys() and back["text"] == b"scan" and back["n"] == 3
    for name in ("ts", "none", "kind"):
        assert back[name].dtype == columns[name].dtype
        assert np.array_equal(back[name], columns[name])
    back["ts"][0] = 99  # a private mapping: writable, and the sender's copy is not changed
    assert list(tmp_path.iterdir()) == []


def test_a_parcel_without_buffers_has_an_empty_file():
    with shared.directory() as into:
        parcel = shared.put(["no", "arrays"], into)
        assert parcel.lengths == [] and shared.take(parcel) == ["no", "arrays"]
        assert os.listdir(into) == []
    assert not os.path.exists(into)


def test_a_parcel_that_shared_memory_cannot_hold_travels_whole(tmp_path, monkeypatch):
    """A full /dev/shm (a container's is 64 MiB by default) fails the write: the parcel then
    holds everything itself, and no file is left."""
    column = np.arange(1_000, dtype=np.int64)
    make = shared.tempfile.mkstemp
    with open("/dev/full", "wb") as device:  # every write to it fails with ENOSPC

        def on_a_full_device(dir: str) -> tuple[int, str]:  # noqa: A002 - mkstemp's name
            fd, name = make(dir=dir)
            os.dup2(device.fileno(), fd)
            return fd, name

        monkeypatch.setattr(shared.tempfile, "mkstemp", on_a_full_device)
        parcel = shared.put({"ts": column}, str(tmp_path))
    assert parcel.name == "" and list(tmp_path.iterdir()) == []
    assert np.array_equal(shared.take(parcel)["ts"], column)


def test_parcels_wait_in_the_temporary_directory_when_shared_memory_is_not_writable(
        tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "MEMORY", str(tmp_path / "not-there"))
    with shared.directory() as into:
        assert os.path.dirname(into) == shared.tempfile.gettempdir()
        assert np.array_equal(shared.take(shared.put(np.ones(3), into)), np.ones(3))
