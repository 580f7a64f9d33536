"""Objects passed from process to process with their large buffers in shared memory.

The sender pickles an object (protocol 5) with its buffers (NumPy columns) out of band, into a
file in a directory in memory (/dev/shm where there is one), and sends only the rest; the
receiver maps the file, rebuilds the object over the mapping without copying, and removes the
file at once. Through a pipe, replay's decoded columns (~50 bytes an event) were copied four
times and read by a thread of the engine's process 64 KiB at a time. A directory is named after
the process that made it, so that what a killed process left behind can be removed.
"""

from __future__ import annotations

import mmap
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None  # None: the temporary directory
ALIGN = 64  # each buffer starts at a multiple of this many bytes in its file


class Parcel(NamedTuple):
    """A pickled object whose buffers wait in the file `name`, one after another (no name: all
    of it is in `head`)."""

    head: bytes
    name: str
    lengths: list[int]


@contextmanager
def directory() -> Iterator[str]:
    """A directory for parcels, removed with what is left in it on leaving (first, the ones
    that processes no longer running left)."""
    prefix = f"chainsight-{os.getpid()}-"
    try:
        sweep()
        made = tempfile.TemporaryDirectory(prefix=prefix, dir=MEMORY)
    except OSError:  # no room or no permission there: the temporary directory
        made = tempfile.TemporaryDirectory(prefix=prefix)
    with made as path:
        yield path


def sweep() -> None:
    """Remove the parcel directories of processes that are gone (they keep memory taken)."""
    for entry in os.scandir(MEMORY or tempfile.gettempdir()):
        owner = re.fullmatch(r"chainsight-(\d+)-\w+", entry.name)
        if owner and entry.is_dir(follow_symlinks=False) and not _alive(int(owner[1])):
            shutil.rmtree(entry.path, ignore_errors=True)


def put(obj: Any, into: str) -> Parcel:
    """`obj` as a parcel whose buffers are in a new file in the directory `into`, or whole
    when the file cannot be written (a full /dev/shm: a container's is 64 MiB by default)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, 5, buffer_callback=buffers.append)
    fd, name = tempfile.mkstemp(dir=into)
    try:
        with open(fd, "wb") as f:
            for buffer in buffers:
                f.write(bytes(-f.tell() % ALIGN))
                f.write(buffer.raw())
    except OSError:
        os.unlink(name)
        return Parcel(pickle.dumps(obj, 5), "", [])
    return Parcel(head, name, [buffer.raw().nbytes for buffer in buffers])


def take(parcel: Parcel) -> Any:
    """The object of a parcel (made by this program's processes only: it is unpickled), its
    buffers mapped from the parcel's file, which is removed."""
    if not parcel.name:
        return pickle.loads(parcel.head)
    with open(parcel.name, "rb") as f:
        os.unlink(parcel.name)
        size = os.fstat(f.fileno()).st_size
        memory = memoryview(mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE)) if size else None
    buffers, at = [], 0
    for length in parcel.lengths:
        at += -at % ALIGN
        buffers.append(memory[at:at + length] if length else b"")
        at += length
    return pickle.loads(parcel.head, buffers=buffers)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True
