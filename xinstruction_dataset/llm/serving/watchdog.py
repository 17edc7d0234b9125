"""The watchdog of a process's managed servers, run as a script (`python watchdog.py GRACE`):
it imports nothing of the package, so it starts in a few milliseconds and survives anything
that happens to the package.

Its parent (process.py) writes `+PGID` when it starts a server in process group PGID and
`-PGID` once it has stopped it, one per line on the watchdog's stdin. When stdin ends (the
parent exited, however it died, SIGKILL included: the kernel closes its pipe), every group still
listed gets SIGTERM, then SIGKILL after GRACE seconds. The servers' own parent-death signal
usually got there first; the watchdog also reaches what a server started itself in its group
(vLLM's engine workers), which a signal to one process does not.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(groups: set[int], signum: int) -> None:
    for group in groups:
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            continue  # ended by itself since (or a reused id that is not ours any more)


def main() -> None:
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; stdin's end is ours
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line[:1] == "+" and line[1:].isdigit():
            groups.add(int(line[1:]))
        elif line[:1] == "-" and line[1:].isdigit():
            groups.discard(int(line[1:]))
    groups = {group for group in groups if _alive(group)}
    if not groups:
        return
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(group) for group in groups):
        time.sleep(0.1)
    _signal({group for group in groups if _alive(group)}, signal.SIGKILL)


if __name__ == "__main__":
    main()
