"""Pod and container stats and metrics: read on demand, or collected every period and cached.

The four stats calls (PodSandboxStats, ListPodSandboxStats, ContainerStats,
ListContainerStats) and ListPodSandboxMetrics are answered from here, as
CRI-O's stats server answers them: ``[stats] collection_period = 0`` reads
the cgroups (and /proc, the pod's network namespace, the writable layers) on
every call; a positive period has a thread collect everything that often and
the calls answer from that collection (a pod or container it has not seen
yet is read on the spot). CPU rates (``usage_nano_cores``) are computed
between successive readings either way (see :mod:`pycrio.stats.usage`).

A pod's stats carry its running containers' stats in ``linux.containers``
(what the kubelet's summary API lists under each pod) next to the pod
cgroup's own cpu, memory and process counts, which CRI-O leaves out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container.record import RUNNING, ContainerRecord
from pycrio.errors import CRIError, Unimplemented
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import BlkioDevice, CgroupStats
from pycrio.kernel.kernel import Kernel
from pycrio.metrics import pod_metrics
from pycrio.sandbox import netstats
from pycrio.sandbox.record import CREATING, READY, SandboxRecord
from pycrio.stats import procfs
from pycrio.stats.usage import CpuRates, fill_cpu, fill_memory, fill_swap

log = logging.getLogger("pycrio.stats")

DEFAULT_INTERFACE = "eth0"  # the interface CNI plugins create in the pod (CNI_IFNAME)


class StatsServer:
    """Collects pod and container stats and metrics for the CRI calls (a core plugin)."""

    def __init__(self, kernel: Kernel, sandboxes: Any, containers: Any) -> None:
        self.kernel = kernel
        self.sandboxes = sandboxes
        self.containers = containers
        table = kernel.config.data.get("stats", {})
        self.period = float(table.get("collection_period", 0))
        self.groups = pod_metrics.enabled_groups(table.get("included_pod_metrics", []))
        self.rates = CpuRates()
        self._pods: dict[str, api_pb2.PodSandboxStats] = {}
        self._containers: dict[str, api_pb2.ContainerStats] = {}
        self._metrics: dict[str, api_pb2.PodSandboxMetrics] = {}
        self._cache_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._devices: dict[tuple[int, int], str] | None = None

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        if self.period > 0:
            self._thread = threading.Thread(target=self._loop, name="stats", daemon=True)
            self._thread.start()

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.collect()
            except Exception:  # noqa: BLE001 - the next period tries again; say why
                log.exception("collecting pod stats and metrics failed")

    def collect(self) -> None:
        """Read every pod and container once and replace the cache with what was read."""
        pods: dict[str, api_pb2.PodSandboxStats] = {}
        containers: dict[str, api_pb2.ContainerStats] = {}
        metrics: dict[str, api_pb2.PodSandboxMetrics] = {}
        for pod in self._pods_visible():
            stats = self._read_pod_stats(pod)
            pods[pod.id] = stats
            for c in stats.linux.containers:
                containers[c.attributes.id] = c
            metrics[pod.id] = self._read_pod_metrics(pod)
        with self._cache_lock:
            self._pods, self._containers, self._metrics = pods, containers, metrics
        self.rates.forget(set(pods) | set(containers))

    # --- the calls ------------------------------------------------------------------

    def pod_stats(self, pod: SandboxRecord) -> api_pb2.PodSandboxStats:
        cached = self._cached(self._pods, pod.id)
        return cached if cached is not None else self._read_pod_stats(pod)

    def container_stats(self, record: ContainerRecord) -> api_pb2.ContainerStats:
        cached = self._cached(self._containers, record.id)
        return cached if cached is not None else self._read_container_stats(record)

    def forget_gone(self) -> None:
        """Drop CPU readings of what no longer exists (after a call that listed everything)."""
        if self.period <= 0:
            keep = {p.id for p in self._pods_visible()}
            keep |= {c.id for c in self._containers_all()}
            self.rates.forget(keep)

    def descriptors(self) -> list[api_pb2.MetricDescriptor]:
        return pod_metrics.descriptors(self._selected())

    def pod_metrics(self) -> list[api_pb2.PodSandboxMetrics]:
        out = []
        for pod in self._pods_visible():
            cached = self._cached(self._metrics, pod.id)
            out.append(cached if cached is not None else self._read_pod_metrics(pod))
        return out

    def _cached(self, cache: dict[str, Any], key: str) -> Any | None:
        if self.period <= 0:
            return None
        with self._cache_lock:
            return cache.get(key)

    # --- records ----------------------------------------------------------------------

    def _pods_visible(self) -> list[SandboxRecord]:
        store = getattr(self.sandboxes, "store", None)
        return [r for r in store.all() if r.state != CREATING] if store is not None else []

    def _containers_all(self) -> list[ContainerRecord]:
        store = getattr(self.containers, "store", None)
        return list(store.all()) if store is not None else []

    def _running(self, pod_id: str) -> list[ContainerRecord]:
        return [r for r in self.containers.of_sandbox(pod_id) if r.state == RUNNING and not r.infra]

    def _cgroup(self, path: str) -> CgroupStats | None:
        driver = self.kernel.cgroup_driver
        if driver is None or not path:
            return None
        try:
            return driver.stats(path)
        except (CRIError, OSError) as e:
            log.debug("stats of cgroup %s: %s", path, e)
            return None  # removed while we looked, or no such controller

    def _runtime_stats(self, r: ContainerRecord) -> CgroupStats | None:
        """The runtime driver's own figures, for a container whose cgroup the node
        cannot see (a VM runtime keeps it in the guest); None when the driver has none."""
        driver = self.kernel.runtime_driver(r.runtime_handler)
        if driver is None:
            return None
        try:
            return driver.stats(r.id)
        except Unimplemented:
            return None
        except (CRIError, OSError) as e:
            log.debug("runtime stats of container %s: %s", r.id, e)
            return None

    # --- stats ------------------------------------------------------------------------

    def _attributes(self, pod: SandboxRecord) -> api_pb2.PodSandboxAttributes:
        return api_pb2.PodSandboxAttributes(
            id=pod.id,
            metadata=api_pb2.PodSandboxMetadata(
                name=pod.name, namespace=pod.namespace, uid=pod.uid, attempt=pod.attempt
            ),
            labels=pod.labels,
            annotations=pod.annotations,
        )

    def _read_pod_stats(self, pod: SandboxRecord) -> api_pb2.PodSandboxStats:
        stats = api_pb2.PodSandboxStats(attributes=self._attributes(pod))
        linux = stats.linux
        if pod.netns_path() and pod.state == READY:
            self._network_stats(pod, linux.network)
        usage = self._cgroup(pod.cgroup_path)
        if usage is not None:
            now = time.time_ns()
            fill_cpu(linux.cpu, usage, now, self.rates.rate(pod.id, now, usage.cpu_usage_ns))
            fill_memory(linux.memory, usage, now)
            linux.process.timestamp = now
            linux.process.process_count.value = len(usage.processes)
        linux.containers.extend(self._read_container_stats(c) for c in self._running(pod.id))
        return stats

    def _network_stats(self, pod: SandboxRecord, usage: api_pb2.NetworkUsage) -> None:
        try:
            counters = netstats.read(pod.netns_path())
        except (CRIError, OSError) as e:
            log.debug("network counters of pod %s: %s", pod.id, e)
            return
        usage.timestamp = time.time_ns()
        for c in counters:
            if c.name == "lo":
                continue
            item = api_pb2.NetworkInterfaceUsage(name=c.name)
            item.rx_bytes.value, item.rx_errors.value = c.rx_bytes, c.rx_errors
            item.tx_bytes.value, item.tx_errors.value = c.tx_bytes, c.tx_errors
            usage.interfaces.append(item)
            if c.name == DEFAULT_INTERFACE:
                usage.default_interface.CopyFrom(item)

    def _read_container_stats(self, r: ContainerRecord) -> api_pb2.ContainerStats:
        stats = api_pb2.ContainerStats(
            attributes=api_pb2.ContainerAttributes(
                id=r.id,
                metadata=api_pb2.ContainerMetadata(name=r.name, attempt=r.attempt),
                labels=r.labels,
                annotations=r.annotations,
            )
        )
        now = time.time_ns()
        usage = None
        if r.state == RUNNING:
            usage = self._cgroup(r.cgroups_path) or self._runtime_stats(r)
        if usage is not None:
            fill_cpu(stats.cpu, usage, now, self.rates.rate(r.id, now, usage.cpu_usage_ns))
            fill_memory(stats.memory, usage, now)
            fill_swap(stats.swap, usage, now)
        layers = self.containers.rootfs
        if layers is not None:
            used, inodes = layers.usage(r.id)
            stats.writable_layer.timestamp = now
            stats.writable_layer.fs_id.mountpoint = layers.dir
            stats.writable_layer.used_bytes.value = used
            stats.writable_layer.inodes_used.value = inodes
        return stats

    # --- metrics ----------------------------------------------------------------------

    def _selected(self) -> list[pod_metrics.PodMetric]:
        driver = self.kernel.cgroup_driver
        measurable = driver.measurable() if driver is not None else frozenset()
        return pod_metrics.selected(self.groups, measurable)

    def _read_pod_metrics(self, pod: SandboxRecord) -> api_pb2.PodSandboxMetrics:
        """The pod's own metrics (its cgroup, its network) and each running container's."""
        entry = api_pb2.PodSandboxMetrics(pod_sandbox_id=pod.id)
        metrics = self._selected()
        fs = self._filesystem()
        running = self._running(pod.id)
        usages = {c.id: self._layer_usage(c.id) for c in running}
        pod_usage = self._cgroup(pod.cgroup_path)
        if pod_usage is not None:
            pod_fs = _with_usage(fs, sum(u for u, _ in usages.values()))
            subject = self._subject([pod.id, pod.name, ""], pod_usage, pod_fs, pod.created_at)
            subject.network = self._pod_interfaces(pod)
            entry.metrics.extend(pod_metrics.values(metrics, subject, pod=True))
        for c in running:
            usage = self._cgroup(c.cgroups_path)
            if usage is None:
                continue  # exited meanwhile
            subject = self._subject(
                [c.id, c.name, c.image_ref or c.image],
                usage,
                _with_usage(fs, usages[c.id][0]),
                c.started_at,
            )
            entry.container_metrics.append(
                api_pb2.ContainerMetrics(
                    container_id=c.id, metrics=pod_metrics.values(metrics, subject, pod=False)
                )
            )
        return entry

    def _subject(
        self, labels: list[str], usage: CgroupStats, fs: pod_metrics.FsUsage, start: int
    ) -> pod_metrics.Subject:
        process = (
            procfs.usage(usage.processes) if "process" in self.groups else procfs.ProcessUsage()
        )
        if self._devices is None:
            self._devices = pod_metrics.block_device_names()
        return pod_metrics.Subject(
            labels=labels,
            cgroup=usage,
            process=process,
            fs=fs,
            start_time_ns=start,
            now_ns=time.time_ns(),
            devices=self._devices,
        )

    def _layer_usage(self, container_id: str) -> tuple[int, int]:
        layers = self.containers.rootfs
        if layers is None or "disk" not in self.groups:
            return 0, 0
        return layers.usage(container_id)

    def _filesystem(self) -> pod_metrics.FsUsage:
        """Size and inodes of the filesystem holding the writable layers, and its device."""
        layers = self.containers.rootfs
        fs = pod_metrics.FsUsage()
        if layers is None:
            return fs
        try:
            st = os.statvfs(layers.dir)
            dev = os.stat(layers.dir).st_dev
        except OSError as e:
            log.debug("statvfs of %s: %s", layers.dir, e)
            return fs
        fs.limit_bytes = st.f_blocks * st.f_frsize
        fs.inodes_total, fs.inodes_free = st.f_files, st.f_ffree
        fs.device = BlkioDevice(
            os.major(dev),
            os.minor(dev),
            bytes={"Read": 0, "Write": 0, "Total": 0},
            ios={"Read": 0, "Write": 0, "Total": 0},
        )
        return fs

    def _pod_interfaces(self, pod: SandboxRecord) -> list[netstats.InterfaceCounters]:
        """The interfaces of the pod's network namespace (the node's for a host-network pod).

        The loopback is left out, as cadvisor does, unless it is all there is.
        """
        try:
            if pod.host_network:
                counters = netstats.read_own()
            elif pod.netns_path() and pod.state == READY:
                counters = netstats.read(pod.netns_path())
            else:
                return []
        except (CRIError, OSError) as e:
            log.debug("network counters of pod %s: %s", pod.id, e)
            return []
        outside = [c for c in counters if c.name != "lo"]
        return outside or counters


def _with_usage(fs: pod_metrics.FsUsage, used: int) -> pod_metrics.FsUsage:
    return pod_metrics.FsUsage(
        usage_bytes=used,
        limit_bytes=fs.limit_bytes,
        inodes_total=fs.inodes_total,
        inodes_free=fs.inodes_free,
        device=fs.device,
    )
