"""The ``cni`` network driver: pods attached by CNI plugins, as CRI-O does.

Configuration comes from ``[network]`` (``network_dir``, ``plugin_dirs``,
``cni_default_network``) and ``[plugins.cni]``:

* ``timeout`` (duration string such as "60s", or seconds): the limit on
  every single plugin call; default 60s.
* ``poll_interval`` (default "1s"): how often the config directory is looked at.

Why a poll and not inotify: the watcher must notice three things, a config
file appearing or changing in ``network_dir`` (possibly created after the
daemon, possibly a symlink swapped by a ConfigMap-style writer) and a plugin
binary appearing in any of ``plugin_dirs`` (a network provider often writes
its config before its binaries). One ``stat`` of each directory and of each
config file per second costs microseconds, works for directories that do
not exist yet and on every filesystem, needs no ctypes structure parsing or
fd bookkeeping, and answers within a second, which is far below the
kubelet's own status polling. Files are re-read only when a stat changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from pycrio import errors
from pycrio.kernel.interfaces import DriverContext, NetworkDriver, NetworkStatus, PodNetwork
from pycrio_cni.cache import CacheEntry, ResultCache
from pycrio_cni.config import (
    SUPPORTED_VERSIONS,
    ConfigInvalid,
    NetworkConfigList,
    Selection,
    choose,
    config_files,
    parse_config,
    valid_name,
    version_at_least,
    version_tuple,
)
from pycrio_cni.invoke import PluginError, VersionProbe, call, find_plugin
from pycrio_cni.payload import capability_args, cni_args, plugin_env, plugin_stdin
from pycrio_cni.result import (
    CODE_CONTAINER_UNKNOWN,
    CODE_TRY_AGAIN,
    ResultInvalid,
    parse_result,
)

log = logging.getLogger("pycrio.cni")

DEFAULT_NETWORK_DIR = "/etc/cni/net.d/"
DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin/", "/usr/lib/cni/")
DEFAULT_TIMEOUT = 60.0
#: The pod's interface, as the kubelet's CNI users name it.
IFNAME = "eth0"
LOOPBACK = "loopback"
NOT_READY = "NetworkPluginNotReady"
#: How long a STATUS answer is reused: ready() is polled by the kubelet
#: every few seconds and must not fork plugins on every call.
STATUS_TTL = 5.0
MAX_CONFIG_BYTES = 1 << 20

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(value: Any, default: float) -> float:
    """Seconds from a number or a Go-style duration ("90s", "1m30s")."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = _DURATION.findall(value)
        if "".join(n + u for n, u in parts) != value.strip():
            raise ValueError(f"{value!r} is not a duration such as 30s or 1m30s")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"{value!r} is not a duration")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be positive")
    return seconds


def _identity(conf: NetworkConfigList | None) -> tuple[str, str] | None:
    return (conf.source, conf.name) if conf else None


class CNIDriver(NetworkDriver):
    """Attaches each pod to the chosen CNI network (and brings up its ``lo``)."""

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        net = ctx.config.data.get("network", {}) if ctx.config else {}
        self.network_dir: str = net.get("network_dir") or DEFAULT_NETWORK_DIR
        self.plugin_dirs: list[str] = list(net.get("plugin_dirs") or DEFAULT_PLUGIN_DIRS)
        self.default_network: str = net.get("cni_default_network") or ""
        opts = ctx.options or {}
        self.timeout = parse_seconds(opts.get("timeout"), DEFAULT_TIMEOUT)
        self.poll_interval = parse_seconds(opts.get("poll_interval"), 1.0)
        self.status_ttl = STATUS_TTL
        self.cache = ResultCache(os.path.join(ctx.state_dir, "results"))
        self._probe = VersionProbe()
        self._state_lock = threading.Lock()
        self._selection = Selection(None, [])
        self._fingerprint: tuple[Any, ...] | None = None
        self._status: tuple[float, NetworkConfigList | None, str] = (0.0, None, "")
        self._locks_guard = threading.Lock()
        self._pod_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._watch, name="cni-config-watch", daemon=True)
        self._thread.start()

    # --- configuration ------------------------------------------------------

    def _fingerprint_now(self) -> tuple[Any, ...]:
        """Stats of everything whose change may change the choice."""
        items: list[tuple[Any, ...]] = []
        try:
            names = os.listdir(self.network_dir)
        except OSError as e:
            items.append(("dir", self.network_dir, e.errno))
            names = []
        for name in config_files(names):
            try:
                st = os.stat(os.path.join(self.network_dir, name))
                items.append(("conf", name, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError as e:
                items.append(("conf", name, e.errno))
        for d in self.plugin_dirs:
            try:
                st = os.stat(d)
                items.append(("bin", d, st.st_ino, st.st_mtime_ns))
            except OSError as e:
                items.append(("bin", d, e.errno))
        return tuple(items)

    def _read_configs(self) -> list[tuple[str, bytes]]:
        files: list[tuple[str, bytes]] = []
        try:
            names = config_files(os.listdir(self.network_dir))
        except OSError:
            return files
        for name in names:
            path = os.path.join(self.network_dir, name)
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_CONFIG_BYTES + 1)
            except OSError as e:
                data = f"<unreadable: {e.strerror}>".encode()
            files.append((name, data))
        return files

    def _check_binaries(self, conf: NetworkConfigList) -> str | None:
        """Why ``conf`` cannot be used with the installed plugins, or None."""
        for plugin in conf.plugins:
            ptype = plugin["type"]
            path = find_plugin(ptype, self.plugin_dirs)
            if path is None:
                return f"plugin {ptype!r} not found in {', '.join(self.plugin_dirs)}"
            try:
                versions = self._probe.supported(
                    path, conf.cni_version, plugin_env("VERSION"), min(self.timeout, 10.0)
                )
            except (PluginError, OSError) as e:
                return f"plugin {ptype!r} did not answer VERSION: {e}"
            if conf.cni_version not in versions:
                return (
                    f"plugin {ptype!r} does not support CNI version {conf.cni_version}"
                    f" (it supports {', '.join(versions)})"
                )
        return None

    def refresh(self, force: bool = False) -> None:
        """Re-choose the network if anything it depends on changed."""
        fingerprint = self._fingerprint_now()
        with self._state_lock:
            if not force and fingerprint == self._fingerprint:
                return
        selection = choose(self._read_configs(), self.default_network, self._check_binaries)
        with self._state_lock:
            before = self._selection.chosen
            self._selection = selection
            self._fingerprint = fingerprint
            self._status = (0.0, None, "")
        after = selection.chosen
        if _identity(before) != _identity(after):
            if after:
                log.info("CNI network %r chosen from %s", after.name, after.source)
            else:
                log.warning("no usable CNI network: %s", self._not_ready_message(selection))
        for problem in selection.problems:
            log.debug("CNI config skipped: %s", problem)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("scanning %s failed", self.network_dir)

    def network(self) -> NetworkConfigList | None:
        """The network new pods are attached to, if any."""
        with self._state_lock:
            return self._selection.chosen

    def _not_ready_message(self, selection: Selection) -> str:
        which = f" for network {self.default_network!r}" if self.default_network else ""
        msg = (
            f"no CNI configuration file in {self.network_dir}{which}."
            " Has your network provider started?"
        )
        if selection.problems:
            msg += " Skipped: " + "; ".join(selection.problems)
        return msg

    # --- readiness ----------------------------------------------------------

    def ready(self) -> tuple[bool, str, str]:
        with self._state_lock:
            selection = self._selection
        conf = selection.chosen
        if conf is None:
            return False, NOT_READY, self._not_ready_message(selection)
        if find_plugin(LOOPBACK, self.plugin_dirs) is None:
            return (
                False,
                NOT_READY,
                f"the {LOOPBACK} CNI plugin is not installed in {', '.join(self.plugin_dirs)}",
            )
        if version_at_least(conf.cni_version, "1.1.0"):
            problem = self._plugin_status(conf)
            if problem:
                return False, NOT_READY, problem
        return True, "", ""

    def _plugin_status(self, conf: NetworkConfigList) -> str:
        """STATUS of every plugin of a 1.1.0 network ("" when all are ready), cached."""
        with self._state_lock:
            when, for_conf, answer = self._status
            if for_conf is conf and time.monotonic() - when < self.status_ttl:
                return answer
        answer = ""
        for plugin in conf.plugins:
            try:
                call(
                    plugin["type"],
                    "STATUS",
                    dirs=self.plugin_dirs,
                    env=plugin_env("STATUS", plugin_dirs=self.plugin_dirs),
                    stdin=plugin_stdin(conf, plugin),
                    timeout=min(self.timeout, 10.0),
                )
            except PluginError as e:
                answer = f"network {conf.name!r}: {e}"
                break
        with self._state_lock:
            self._status = (time.monotonic(), conf, answer)
        return answer

    def handles_port_mappings(self) -> bool:
        conf = self.network()
        return bool(conf and "portMappings" in conf.capabilities())

    # --- per-pod operations -------------------------------------------------

    @contextlib.contextmanager
    def _pod_lock(self, pod_id: str) -> Iterator[None]:
        """Serialise operations on one pod (the spec forbids parallel ones)."""
        with self._locks_guard:
            lock, users = self._pod_locks.get(pod_id, (threading.Lock(), 0))
            self._pod_locks[pod_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_guard:
                lock, users = self._pod_locks[pod_id]
                if users == 1:
                    del self._pod_locks[pod_id]
                else:
                    self._pod_locks[pod_id] = (lock, users - 1)

    def _call(
        self,
        conf: NetworkConfigList,
        plugin: dict[str, Any],
        command: str,
        pod_id: str,
        netns: str,
        ifname: str,
        args: str,
        cap_args: dict[str, Any],
        prev_result: dict[str, Any] | None,
    ) -> bytes:
        return call(
            plugin["type"],
            command,
            dirs=self.plugin_dirs,
            env=plugin_env(
                command,
                container_id=pod_id,
                netns=netns,
                ifname=ifname,
                args=args,
                plugin_dirs=self.plugin_dirs,
            ),
            stdin=plugin_stdin(conf, plugin, prev_result=prev_result, cap_args=cap_args),
            timeout=self.timeout,
        )

    def _add_list(
        self, conf: NetworkConfigList, pod_id: str, netns: str, ifname: str, args: str, caps: dict
    ) -> dict[str, Any]:
        """ADD every plugin in order, each given the previous one's result."""
        prev: dict[str, Any] | None = None
        for plugin in conf.plugins:
            out = self._call(conf, plugin, "ADD", pod_id, netns, ifname, args, caps, prev)
            try:
                prev = parse_result(out).raw
            except ResultInvalid as e:
                raise ResultInvalid(
                    f"plugin {plugin['type']!r} printed no valid result: {e}"
                ) from e
        assert prev is not None  # a list has at least one plugin
        return prev

    def _del_list(
        self,
        conf: NetworkConfigList,
        pod_id: str,
        netns: str,
        ifname: str,
        args: str,
        caps: dict,
        prev: dict[str, Any] | None,
    ) -> None:
        """DEL every plugin in reverse order; stops at the first failure (the spec).

        One deliberate exception: a plugin whose binary is gone is skipped
        with a warning. Nothing can run its DEL any more, and stopping there
        would strand what the other plugins hold (the IP, the veth, the
        iptables rules) on every retry, forever.
        """
        if not version_at_least(conf.cni_version, "0.4.0"):
            prev = None  # DEL carries prevResult only since 0.4.0
        for plugin in reversed(conf.plugins):
            try:
                self._call(conf, plugin, "DEL", pod_id, netns, ifname, args, caps, prev)
            except PluginError as e:
                if e.info.code == CODE_CONTAINER_UNKNOWN:
                    continue  # "nothing to clean up" by definition
                if e.missing:
                    log.warning("pod %s: skipping DEL of %s", pod_id, e)
                    continue
                raise

    def _loopback_conf(self) -> NetworkConfigList:
        """The network CRI-O runs on every pod to bring ``lo`` up, at the best version."""
        version = "0.3.1"
        path = find_plugin(LOOPBACK, self.plugin_dirs)
        if path:
            with contextlib.suppress(PluginError, OSError):
                supported = self._probe.supported(
                    path, version, plugin_env("VERSION"), min(self.timeout, 10.0)
                )
                common = [v for v in supported if v in SUPPORTED_VERSIONS]
                if common:
                    version = max(common, key=version_tuple)
        return NetworkConfigList(
            name="cni-loopback", cni_version=version, plugins=[{"type": LOOPBACK}]
        )

    def _failure(self, action: str, pod: PodNetwork, net: str, e: Exception) -> errors.CRIError:
        """The typed error for a failed plugin call, naming the pod, network and plugin."""
        what = f"failed to {action} pod {pod.namespace}/{pod.name} ({pod.pod_id}) network {net!r}"
        text = f"{what}: {e}"
        if isinstance(e, PluginError):
            if e.timed_out:
                return errors.DeadlineExceeded(text)
            if e.info.code == CODE_TRY_AGAIN:
                return errors.Unavailable(text)
        return errors.Internal(text)

    @staticmethod
    def _check_pod(pod: PodNetwork) -> None:
        if not valid_name(pod.pod_id):
            raise errors.InvalidArgument(f"pod id {pod.pod_id!r} cannot be a CNI container id")

    def setup(self, pod: PodNetwork) -> NetworkStatus:
        """Bring up ``lo``, then ADD the chosen network; undo everything on failure."""
        self._check_pod(pod)
        if not pod.netns_path:
            log.debug("pod %s has no network namespace (host network): no CNI", pod.pod_id)
            return NetworkStatus()
        if not os.path.exists(pod.netns_path):
            raise errors.FailedPrecondition(
                f"network namespace {pod.netns_path} of pod {pod.pod_id} does not exist"
            )
        conf = self.network()
        if conf is None:
            self.refresh()  # a config written a moment ago need not wait for the poll
            conf = self.network()
        if conf is None:
            raise errors.Unavailable(f"network plugin not ready: {self.ready()[2]}")
        try:
            args = cni_args(pod)
        except ValueError as e:
            raise errors.InvalidArgument(str(e)) from e
        caps = capability_args(pod)
        lo = self._loopback_conf()
        with self._pod_lock(pod.pod_id):
            try:
                self._add_list(lo, pod.pod_id, pod.netns_path, "lo", args, {})
            except (PluginError, ResultInvalid) as e:
                raise self._failure("set up", pod, lo.name, e) from e
            entry = CacheEntry(
                container_id=pod.pod_id,
                ifname=IFNAME,
                network_name=conf.name,
                config=conf.to_dict(),
                cni_args=args,
                capability_args=caps,
                netns=pod.netns_path,
            )
            try:
                self.cache.save(entry)
                result = self._add_list(conf, pod.pod_id, pod.netns_path, IFNAME, args, caps)
                parsed = parse_result(result)
                entry.result = result
                self.cache.save(entry)
            except Exception as e:  # noqa: BLE001 - any failure is undone, then reported
                undo = self._undo(conf, pod, args, caps)
                err = self._failure("set up", pod, conf.name, e)
                if undo:
                    err = type(err)(f"{err.message}; undoing it failed too: {undo}")
                raise err from e
        log.info("pod %s attached to %r: %s", pod.pod_id, conf.name, ", ".join(parsed.pod_ips()))
        return NetworkStatus(ips=parsed.pod_ips(), interfaces=list(parsed.interfaces))

    def _undo(self, conf: NetworkConfigList, pod: PodNetwork, args: str, caps: dict) -> str:
        """DEL a half-done ADD (every plugin, as the spec asks); "" or what failed."""
        try:
            self._del_list(conf, pod.pod_id, pod.netns_path, IFNAME, args, caps, None)
        except PluginError as e:
            log.error("undoing the failed ADD of pod %s: %s", pod.pod_id, e)
            return str(e)  # the cache entry stays, so a teardown retries the DEL
        self.cache.delete(pod.pod_id, IFNAME)
        self._loopback_del(pod.pod_id, pod.netns_path, args)
        return ""

    def _loopback_del(self, pod_id: str, netns: str, args: str) -> None:
        # Only lo inside the namespace is touched: nothing outside to leak, so
        # a failure is logged, never fatal.
        if not netns or not os.path.exists(netns):
            return
        lo = self._loopback_conf()
        try:
            self._del_list(lo, pod_id, netns, "lo", args, {}, None)
        except PluginError as e:
            log.warning("bringing lo down in pod %s: %s", pod_id, e)

    def _attachment(self, pod: PodNetwork) -> tuple[NetworkConfigList, CacheEntry | None] | None:
        """What the pod was attached with: the cache, else today's network."""
        entry = self.cache.load(pod.pod_id, IFNAME)
        if entry is not None:
            try:
                return parse_config(json.dumps(entry.config), f"cache:{pod.pod_id}"), entry
            except ConfigInvalid as e:
                log.warning("cached CNI config of pod %s is unusable (%s)", pod.pod_id, e)
        conf = self.network()
        return (conf, None) if conf else None

    def teardown(self, pod: PodNetwork) -> None:
        """DEL the pod with the config it was added with; idempotent, netns optional."""
        self._check_pod(pod)
        with self._pod_lock(pod.pod_id):
            found = self._attachment(pod)
            if found is None:
                log.debug("pod %s: no CNI attachment on record and no network", pod.pod_id)
                return
            conf, entry = found
            netns = pod.netns_path or (entry.netns if entry else "")
            if netns and not os.path.exists(netns):
                netns = ""  # the spec: without a netns, plugins release what they can
            if entry is not None:
                args, caps, prev = entry.cni_args, entry.capability_args, entry.result
            else:
                try:
                    args = cni_args(pod)
                except ValueError as e:
                    raise errors.InvalidArgument(str(e)) from e
                caps, prev = capability_args(pod), None
            try:
                self._del_list(conf, pod.pod_id, netns, IFNAME, args, caps, prev)
            except PluginError as e:
                raise self._failure("tear down", pod, conf.name, e) from e
            self.cache.delete(pod.pod_id, IFNAME)
            self._loopback_del(pod.pod_id, netns, args)
        log.info("pod %s detached from %r", pod.pod_id, conf.name)

    def check(self, pod: PodNetwork) -> None:
        """CHECK the pod's attachment against its cached result (spec >= 0.4.0)."""
        self._check_pod(pod)
        with self._pod_lock(pod.pod_id):
            entry = self.cache.load(pod.pod_id, IFNAME)
            if entry is None or entry.result is None:
                raise errors.NotFound(f"pod {pod.pod_id} has no CNI attachment on record")
            try:
                conf = parse_config(json.dumps(entry.config), f"cache:{pod.pod_id}")
            except ConfigInvalid as e:
                raise errors.Internal(f"cached CNI config of pod {pod.pod_id}: {e}") from e
            if conf.disable_check or not version_at_least(conf.cni_version, "0.4.0"):
                return
            netns = pod.netns_path or entry.netns
            if not netns or not os.path.exists(netns):
                raise errors.FailedPrecondition(
                    f"network namespace {netns or '(none)'} of pod {pod.pod_id} does not exist"
                )
            for plugin in conf.plugins:
                try:
                    self._call(
                        conf,
                        plugin,
                        "CHECK",
                        pod.pod_id,
                        netns,
                        IFNAME,
                        entry.cni_args,
                        entry.capability_args,
                        entry.result,
                    )
                except PluginError as e:
                    raise self._failure("check", pod, conf.name, e) from e

    def status(self, pod: PodNetwork) -> NetworkStatus:
        """The cached addresses of a pod (after a restart, without calling plugins)."""
        entry = self.cache.load(pod.pod_id, IFNAME)
        if entry is None or entry.result is None:
            return NetworkStatus()
        parsed = parse_result(entry.result)
        return NetworkStatus(ips=parsed.pod_ips(), interfaces=list(parsed.interfaces))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
