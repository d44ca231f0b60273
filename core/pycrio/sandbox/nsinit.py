"""Runs inside a pod's fresh namespaces, once, to set them up.

Invoked by ``unshare`` (which creates and pins the namespaces) as
``python -I -S .../nsinit.py --hostname NAME --sysctl key=value ...``:
the hostname belongs to the new UTS namespace and /proc/sys/net and the IPC
sysctls written here belong to the new network and IPC namespaces. Run as a
file without site-packages, so it must import nothing but the standard
library.
"""

from __future__ import annotations

import argparse
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pycrio-nsinit")
    parser.add_argument("--hostname", default="")
    parser.add_argument("--sysctl", action="append", default=[])
    args = parser.parse_args(argv)
    if args.hostname:
        socket.sethostname(args.hostname)
    for item in args.sysctl:
        key, _, value = item.partition("=")
        # "net/ipv4/conf/eth0.100/forwarding" style keys keep their dots
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            print(f"sysctl {key}={value}: {e.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
