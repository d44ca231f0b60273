"""The files a pod's containers share: hostname, hosts, resolv.conf, /dev/shm.

They live in the pod's run dir under the runroot (tmpfs on a node), which a
machine crash empties anyway: written atomically, not synced.
"""

from __future__ import annotations

import os

from cri_api.v1 import api_pb2

from pycrio.errors import Internal, InvalidArgument
from pycrio.linux import libc
from pycrio.storage.atomic import write_atomic

HOST_RESOLV_CONF = "/etc/resolv.conf"


def write_hostname(run_dir: str, hostname: str) -> str:
    path = os.path.join(run_dir, "hostname")
    write_atomic(path, f"{hostname}\n".encode(), sync=False)
    return path


def write_hosts(run_dir: str, hostname: str, ips: list[str]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname:
        lines += [f"{ip}\t{hostname}" for ip in ips] or [f"127.0.1.1\t{hostname}"]
    path = os.path.join(run_dir, "hosts")
    write_atomic(path, ("\n".join(lines) + "\n").encode(), sync=False)
    return path


def write_resolv_conf(run_dir: str, dns: api_pb2.DNSConfig | None) -> str:
    """The pod's resolv.conf: from its DNSConfig, else a copy of the host's."""
    if dns is not None and (dns.servers or dns.searches or dns.options):
        lines = [f"nameserver {s}" for s in dns.servers]
        if dns.searches:
            lines.append("search " + " ".join(dns.searches))
        if dns.options:
            lines.append("options " + " ".join(dns.options))
        content = ("\n".join(lines) + "\n").encode()
    else:
        try:
            with open(HOST_RESOLV_CONF, "rb") as f:
                content = f.read()
        except FileNotFoundError:
            content = b""
    path = os.path.join(run_dir, "resolv.conf")
    write_atomic(path, content, sync=False)
    return path


def parse_size(text: str) -> int:
    """Bytes in a size such as 64Mi, 64m or 65536 (the shm_size option)."""
    units = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
    number = text.rstrip("kKmMgGiI")
    unit = text[len(number) :].lower()
    if not number.isdigit() or unit not in units:
        raise InvalidArgument(
            f"size {text!r} is not a number with an optional k, m, g, Ki, Mi or Gi"
        )
    return int(number) * units[unit]


def mount_shm(run_dir: str, size_bytes: int) -> str:
    path = os.path.join(run_dir, "shm")
    os.makedirs(path, mode=0o755, exist_ok=True)
    flags = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
    try:
        libc.mount("shm", path, "tmpfs", flags, f"mode=1777,size={size_bytes}")
    except OSError as e:
        raise Internal(f"mounting the pod's /dev/shm at {path}: {e.strerror}") from e
    return path


def unmount(path: str) -> None:
    if not path:
        return
    try:
        libc.unmount(path)
    except OSError as e:
        raise Internal(f"unmounting {path}: {e.strerror}") from e
