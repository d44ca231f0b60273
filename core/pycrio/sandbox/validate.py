"""Checks of a RunPodSandbox request, done before anything is created."""

from __future__ import annotations

import ipaddress
import re

from cri_api.v1 import api_pb2

from pycrio.errors import InvalidArgument

_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SYSCTL = re.compile(r"^[a-z0-9_]+([./][a-z0-9_-]+)*$", re.I)
_DNS_OPTION = re.compile(r"^[a-zA-Z0-9_-]+(:[0-9]+)?$")
_DOMAIN = re.compile(
    r"^[a-zA-Z0-9_]([-a-zA-Z0-9_]{0,62})(\.[a-zA-Z0-9_]([-a-zA-Z0-9_]{0,62}))*\.?$"
)
MAX_DNS_SEARCHES = 32
MAX_DNS_SEARCH_CHARS = 2048

IPC_SYSCTL_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
IPC_SYSCTLS = ("kernel.sem",)
PROTOCOLS = {api_pb2.TCP: "tcp", api_pb2.UDP: "udp", api_pb2.SCTP: "sctp"}


def metadata(config: api_pb2.PodSandboxConfig) -> None:
    md = config.metadata
    for field in ("name", "namespace", "uid"):
        if not getattr(md, field):
            raise InvalidArgument(f"PodSandboxConfig.metadata.{field} is empty")
    if md.attempt < 0:
        raise InvalidArgument("PodSandboxConfig.metadata.attempt is negative")


def hostname(name: str) -> None:
    if name and (len(name) > 253 or not _HOSTNAME.match(name)):
        raise InvalidArgument(
            f"hostname {name!r} is not a valid RFC 1123 host name"
            " (lowercase letters, digits, '-' and '.', at most 253 characters)"
        )


def sysctl_namespace(key: str) -> str:
    """'net' or 'ipc': the namespace a sysctl belongs to; InvalidArgument otherwise."""
    dotted = key.replace("/", ".")
    if not _SYSCTL.match(key):
        raise InvalidArgument(f"sysctl {key!r} is not a valid sysctl name")
    if dotted.startswith("net."):
        return "net"
    if dotted in IPC_SYSCTLS or dotted.startswith(IPC_SYSCTL_PREFIXES):
        return "ipc"
    raise InvalidArgument(
        f"sysctl {key!r} is not namespaced: only net.*, kernel.shm*, kernel.msg*,"
        " kernel.sem and fs.mqueue.* can be set per pod"
    )


def sysctls(values: dict[str, str], host_network: bool, host_ipc: bool) -> None:
    for key, value in values.items():
        ns = sysctl_namespace(key)
        if ns == "net" and host_network:
            raise InvalidArgument(f"sysctl {key!r} cannot be set on a pod using the host network")
        if ns == "ipc" and host_ipc:
            raise InvalidArgument(f"sysctl {key!r} cannot be set on a pod using the host IPC")
        if "\n" in value or "\0" in value or not value.strip():
            raise InvalidArgument(f"sysctl {key!r} has an invalid value {value!r}")


def dns(config: api_pb2.DNSConfig) -> None:
    for server in config.servers:
        try:
            ipaddress.ip_address(server)
        except ValueError as e:
            raise InvalidArgument(f"DNS server {server!r} is not an IP address") from e
    if len(config.searches) > MAX_DNS_SEARCHES:
        raise InvalidArgument(
            f"{len(config.searches)} DNS search domains given; at most {MAX_DNS_SEARCHES}"
        )
    if sum(len(s) + 1 for s in config.searches) > MAX_DNS_SEARCH_CHARS:
        raise InvalidArgument(f"DNS search list is longer than {MAX_DNS_SEARCH_CHARS} characters")
    for search in config.searches:
        if len(search) > 253 or not _DOMAIN.match(search):
            raise InvalidArgument(f"DNS search domain {search!r} is not a valid domain")
    for option in config.options:
        if not _DNS_OPTION.match(option):
            raise InvalidArgument(
                f"DNS option {option!r} is not valid: expected name or name:number"
            )


def port_mappings(mappings: list[api_pb2.PortMapping]) -> list[dict[str, object]]:
    result = []
    for m in mappings:
        if not 0 < m.container_port < 65536:
            raise InvalidArgument(f"port mapping container_port {m.container_port} out of range")
        if not 0 <= m.host_port < 65536:
            raise InvalidArgument(f"port mapping host_port {m.host_port} out of range")
        if m.protocol not in PROTOCOLS:
            raise InvalidArgument(f"port mapping protocol {m.protocol} is unknown")
        if m.host_ip:
            try:
                ipaddress.ip_address(m.host_ip)
            except ValueError as e:
                raise InvalidArgument(f"port mapping host_ip {m.host_ip!r} is not an IP") from e
        result.append(
            {
                "host_port": m.host_port,
                "container_port": m.container_port,
                "protocol": PROTOCOLS[m.protocol],
                "host_ip": m.host_ip,
            }
        )
    return result


def log_directory(path: str) -> None:
    if path and (not path.startswith("/") or ".." in path.split("/")):
        raise InvalidArgument(f"log_directory {path!r} must be an absolute path without '..'")


def cgroup_parent(path: str) -> None:
    if path and ".." in path.split("/"):
        raise InvalidArgument(f"cgroup_parent {path!r} must not contain '..'")
