"""Idle start time and RSS of the daemon with ten unused drivers installed, against none.

Builds ten dummy distributions, each a network driver (``pycrio.network``
entry point ``dummy0`` ... ``dummy9``) whose import costs what a driver with
real dependencies costs: ~30 ms of work and ~5 MiB kept in memory. They are
installed with pip into a directory of their own and made visible to the
daemon through PYTHONPATH; the configuration names none of them. The daemon
is then started alternately with and without them: time from exec to its
CRI socket answering Version, and its RSS (VmRSS) once idle.

Installed but unused drivers must cost nothing: they are listed from
metadata, never imported (docs/plugins.md). ``--python`` runs another
checkout's interpreter (e.g. /work/main/.venv/bin/python) for a before/after.

Usage: .venv/bin/python bench/plugins.py [--rounds N] [--python PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc

COUNT = 10

DRIVER = '''"""A dummy driver whose import is as costly as one with real dependencies."""

import time

from pycrio.kernel.interfaces import NetworkDriver, NetworkStatus

_start = time.process_time()
while time.process_time() - _start < 0.03:  # import-time work
    pass
BALLAST = bytearray(5 << 20)  # memory its dependencies would keep
for i in range(0, len(BALLAST), 4096):
    BALLAST[i] = 1


class Dummy(NetworkDriver):
    def setup(self, pod):
        return NetworkStatus()

    def teardown(self, pod):
        pass
'''

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "pycrio-bench-dummy{n}"
version = "0.0.1"

[project.entry-points."pycrio.network"]
dummy{n} = "pycrio_bench_dummy{n}:Dummy"
"""


def build_site(tmp: Path, python: str) -> Path:
    site = tmp / "site"
    dists = []
    for n in range(COUNT):
        d = tmp / f"dummy{n}"
        (d / f"pycrio_bench_dummy{n}").mkdir(parents=True)
        (d / f"pycrio_bench_dummy{n}" / "__init__.py").write_text(DRIVER)
        (d / "pyproject.toml").write_text(PYPROJECT.format(n=n))
        dists.append(str(d))
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), *dists],
        check=True, timeout=600,
    )  # fmt: skip
    return site


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_once(python: str, tmp: Path, site: Path | None) -> tuple[float, int]:
    """(seconds to a Version answer, idle RSS in KiB) of one daemon start."""
    run = tmp / f"run-{time.monotonic_ns()}"
    run.mkdir()
    (run / "conf.d").mkdir()
    (run / "pycrio.conf").write_text("")
    sock = run / "run" / "pycrio.sock"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    argv = [
        python, "-m", "pycrio", "--config", str(run / "pycrio.conf"),
        "--config-dir", str(run / "conf.d"), "--listen", str(sock),
        "--root", str(run / "root"), "--runroot", str(run / "runroot"),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pycrio exited: {proc.stderr.read().decode()[-2000:]}")
            if sock.exists():
                try:
                    with grpc.insecure_channel(f"unix://{sock}") as ch:
                        api_pb2_grpc.RuntimeServiceStub(ch).Version(
                            api_pb2.VersionRequest(), timeout=1
                        )
                    break
                except grpc.RpcError:
                    pass
            if time.monotonic() - started > 60:
                raise RuntimeError("pycrio did not answer within 60s")
            time.sleep(0.01)
        ready = time.monotonic() - started
        time.sleep(2)  # idle
        return ready, rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pycrio-bench-plugins-") as d:
        tmp = Path(d)
        site = build_site(tmp, args.python)
        results: dict[str, list[tuple[float, int]]] = {"none": [], "ten": []}
        for _ in range(args.rounds):
            results["none"].append(start_once(args.python, tmp, None))
            results["ten"].append(start_once(args.python, tmp, site))
    print(f"python: {args.python}; {args.rounds} starts each, alternating")
    med = {}
    for key, label in (("none", "no extra plugins"), ("ten", f"{COUNT} unused drivers")):
        times = [t for t, _ in results[key]]
        rss = [r for _, r in results[key]]
        med[key] = (statistics.median(times), statistics.median(rss))
        print(
            f"{label:>18}: start to Version p50 {med[key][0] * 1000:7.0f} ms"
            f" (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f});"
            f" idle RSS p50 {med[key][1] / 1024:6.1f} MiB"
        )
    print(
        f"ratio ({COUNT} unused / none): start {med['ten'][0] / med['none'][0]:.2f},"
        f" RSS {med['ten'][1] / med['none'][1]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
