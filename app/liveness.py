"""Who holds a running job, and whether that holder is surely gone.

A claim names its owner `machine/pid/token`. Within one boot of one machine (and one PID
namespace) a process id names one process, so an owner of this machine whose process has exited
is dead at once; an owner of this process is alive while its job manager runs (it says so with
`hold`). An owner on another machine is never judged here: its heartbeat going stale decides.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path


def _machine() -> str:
    """This boot of this machine and this PID namespace: within it, a process id names one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot[:8]}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc: owners are told apart by their heartbeat alone
        return f"{socket.gethostname()}.{uuid.uuid4().hex[:8]}"


# computed once per process: the no-/proc fallback is random, and must name this process the same each time
MACHINE = _machine()


class Owners:
    """The claim owners of this process and the judge of every owner's liveness. One per job store:
    the managers running on a store hold their owner in its `owners` while they run."""

    def __init__(self) -> None:
        self._live: set[str] = set()

    @staticmethod
    def new() -> str:
        """A unique claim owner for one job manager: `machine/pid/token`."""
        return f"{MACHINE}/{os.getpid()}/{uuid.uuid4().hex[:8]}"

    def hold(self, owner: str, live: bool) -> None:
        """Mark an owner of this process as running (its manager started) or not (stopped)."""
        if live:
            self._live.add(owner)
        else:
            self._live.discard(owner)

    def dead(self, owner: str | None) -> bool:
        """True only when the owner surely is not running: no owner recorded (a crash before owners
        existed), a manager of this process that has stopped, or a process of this machine that has
        exited."""
        if not owner:
            return True
        machine, _, rest = owner.partition("/")
        pid_text, _, _ = rest.partition("/")
        if machine != MACHINE or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return owner not in self._live
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # someone else's live process with a recycled pid
            return False
        try:  # a killed child its parent has not reaped yet is a zombie: dead all the same
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return False
