"""Whether a process still runs on this machine: how a dead run worker is told from a busy one."""

from __future__ import annotations

import os


def process_alive(pid: int | None) -> bool:
    """True while `pid` runs on this machine (a zombie, i.e. killed but not reaped, is dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own child so the pid is freed
        except ChildProcessError:
            pass
        return False
    return True
