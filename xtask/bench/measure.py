"""Runs a command and prints, as the last line of stdout, the child's own resource use as JSON:
user and system CPU seconds, peak RSS and wall time, from wait4(2) — nothing of this script's
own work is counted.

    python measure.py -- CMD [ARGS...]
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: measure.py -- CMD [ARGS...]", file=sys.stderr)
        return 2
    sys.stdout.flush()
    start = time.perf_counter()
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    print(
        json.dumps(
            {
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                # Linux reports ru_maxrss in KiB.
                "maxrss_kib": usage.ru_maxrss,
                "wall_s": wall,
                "exit": code,
            }
        ),
        flush=True,
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
