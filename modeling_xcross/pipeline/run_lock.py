"""One training at a time per output directory: two identical trainings started into one folder would each resume
from and write over the other's checkpoints.

The lock is an exclusive `flock` of the directory itself: no lock file to leave behind, and the kernel releases it
when the process ends, however it ends (Ctrl-C, a kill, a crash), so a stale lock never blocks a rerun.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from ..errors import XCrossError
from .trainer import world_rank

try:
    import fcntl
except ImportError:  # Windows has no flock: trainings there are not locked
    fcntl = None

# The locks this process holds, by directory, so that a process never blocks itself (a run resumed in-process while
# the frame of its interrupted first attempt is still alive).
_HELD: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class OutputDirInUseError(XCrossError):
    """Another process is training into the output directory."""


class RunLock:
    """A held lock: released when the object is dropped (or the process ends)."""

    def __init__(self, descriptor: int):
        self.descriptor = descriptor

    def __del__(self):
        os.close(self.descriptor)


def lock_output_dir(output_dir: str | os.PathLike) -> RunLock | None:
    """Lock `output_dir` (created if need be) for this process's training until the returned object is dropped;
    refused when another process holds it. Only rank 0 locks (the other ranks of a distributed run share its
    directory); None where there is nothing to hold (another rank, a file system without locks)."""
    if fcntl is None or world_rank() != 0:
        return None
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    held = _HELD.get(key)
    if held is not None:
        return held
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputDirInUseError(f"--output-dir {directory} is in use: another training is writing into it right "
                                  "now. Wait for it to end (then rerun to resume), or choose another --output-dir.")
    except OSError:  # a file system without flock (some network ones): the training runs unlocked
        os.close(descriptor)
        return None
    lock = RunLock(descriptor)
    _HELD[key] = lock
    return lock
