"""The runtime side of NRI: plugins, their ordering, and event delivery.

One lock serializes event delivery and the synchronization of a newly
connected plugin (as containerd/nri's Adaptation does): a plugin is
synchronized with a snapshot of every pod and container taken under the
lock and joins the list of plugins before the lock is released, so each
event that follows reaches it exactly once and none that preceded is
replayed.

Plugin failures follow NRI: a plugin that times out, hangs up or talks
nonsense is disconnected, logged by name, and the call goes on without it;
a plugin that *answers* with an error fails the CRI call when the event is
one that can still be refused (RunPodSandbox, CreateContainer,
StartContainer, UpdateContainer, UpdatePodSandbox); errors for the other
events are logged.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pycrio.errors import FailedPrecondition
from pycrio.ttrpc import TtrpcError
from pycrio.ttrpc.transport import hang_up
from pycrio_nri import api
from pycrio_nri.launch import Launched
from pycrio_nri.remote import PluginGone, RemotePlugin, check_index

log = logging.getLogger("pycrio.nri")

#: A SynchronizeRequest is split once its objects add up to this many bytes.
SYNC_CHUNK = 3 << 20
EV = api.Event.Value


@dataclass
class Settings:
    """CRI-O's [nri] keys, with durations in seconds."""

    socket_path: str = "/var/run/nri/nri.sock"
    plugin_dir: str = "/opt/nri/plugins"
    plugin_config_dir: str = "/etc/nri/conf.d"
    disable_connections: bool = False
    registration_timeout: float = 5.0
    request_timeout: float = 2.0
    socket_mode: int = 0o600
    runtime_name: str = "pycrio"
    runtime_version: str = ""


class PluginError(FailedPrecondition):
    """A plugin answered an event with an error; the CRI call fails with it."""


class Adaptation:
    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], tuple[list[Any], list[Any]]],
        update: Callable[[str, Any], None],
        evict: Callable[[str, str], None],
    ) -> None:
        self.settings = settings
        self._snapshot = snapshot
        self._update = update
        self._evict = evict
        self.plugins: list[RemotePlugin] = []
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        self._stopping = False

    # --- plugins -----------------------------------------------------------------

    def start(self) -> None:
        self._launch_preinstalled()
        if not self.settings.disable_connections:
            self._listen()

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            hang_up(self._listener)
            try:
                os.unlink(self.settings.socket_path)
            except FileNotFoundError:
                pass
        with self._lock:
            plugins = list(self.plugins)
        for p in plugins:
            try:
                p.call("Shutdown", api.Empty(), timeout=min(1.0, self.settings.request_timeout))
            except (PluginGone, TtrpcError) as e:
                log.info("NRI plugin %s: Shutdown: %s", p.name, e)
            p.stop()

    def connected(self) -> list[RemotePlugin]:
        with self._lock:
            return [p for p in self.plugins if not p.closed]

    def _listen(self) -> None:
        path = self.settings.socket_path
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                if _in_use(path):
                    log.error(
                        "NRI: %s is served by another process (another runtime?); not"
                        " accepting external plugins. Set [nri] nri_listen to a free path",
                        path,
                    )
                    return
                os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, self.settings.socket_mode)
        sock.listen(16)
        self._listener = sock
        threading.Thread(target=self._accept, name="nri-accept", daemon=True).start()
        log.info("NRI: accepting plugins on %s", path)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            plugin = RemotePlugin(conn, self._plugin_update, self._plugin_closed)
            threading.Thread(
                target=self._admit, args=(plugin,), name="nri-admit", daemon=True
            ).start()

    def _launch_preinstalled(self) -> None:
        directory = self.settings.plugin_dir
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            path = os.path.join(directory, entry)
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                continue
            st = os.stat(path)
            if st.st_mode & 0o022 or (os.geteuid() == 0 and st.st_uid != 0):
                log.error(
                    "NRI: not starting %s: it must be owned by root and writable by no one else",
                    path,
                )
                continue
            idx, _, base = entry.partition("-")
            try:
                check_index(idx)
                if not base:
                    raise ValueError("idx-pluginname expected")
            except ValueError as e:
                log.error("NRI: skipping pre-installed plugin %s: %s", path, e)
                continue
            try:
                self._admit(self._launch(path, idx, base), raise_errors=True)
            except Exception as e:  # noqa: BLE001 - one bad plugin must not stop the others
                log.error("NRI: pre-installed plugin %s failed to start: %s", entry, e)

    def _launch(self, path: str, idx: str, base: str) -> RemotePlugin:
        """Start ``path`` with one end of a socket pair as fd 3, as NRI does."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {
            "NRI_PLUGIN_NAME": base,
            "NRI_PLUGIN_IDX": idx,
            "NRI_PLUGIN_SOCKET": "3",
        }
        try:
            proc = Launched(path, theirs, env)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        log.info("NRI: launched pre-installed plugin %s-%s (pid %d)", idx, base, proc.pid)
        return RemotePlugin(
            ours,
            self._plugin_update,
            self._plugin_closed,
            index=idx,
            base=base,
            config=self._plugin_config(idx, base),
            proc=proc,
        )

    def _plugin_config(self, idx: str, base: str) -> str:
        for name in (f"{idx}-{base}.conf", f"{base}.conf"):
            try:
                with open(os.path.join(self.settings.plugin_config_dir, name)) as f:
                    return f.read()
            except FileNotFoundError:
                continue
        return ""

    def _admit(self, plugin: RemotePlugin, raise_errors: bool = False) -> None:
        """Registration, Configure, Synchronize; then the plugin gets events."""
        try:
            plugin.start(self.settings.registration_timeout)
            self._configure(plugin)
            with self._lock:
                self._synchronize(plugin)
                if plugin.closed:
                    raise PluginGone(f"NRI plugin {plugin.name} closed during synchronization")
                self.plugins.append(plugin)
                self.plugins.sort(key=lambda p: (p.idx, p.base))
            log.info("NRI plugin %s is synchronized and receives events", plugin.describe())
        except (PluginGone, TtrpcError, ValueError) as e:
            log.error("NRI: plugin %s not admitted: %s", plugin.name, e)
            plugin.stop()
            if raise_errors:
                raise

    def _configure(self, plugin: RemotePlugin) -> None:
        s = self.settings
        req = api.ConfigureRequest(
            config=plugin.config,
            runtime_name=s.runtime_name,
            runtime_version=s.runtime_version,
            registration_timeout=int(s.registration_timeout * 1000),
            request_timeout=int(s.request_timeout * 1000),
            NRI_version=api.NRI_VERSION,
        )
        plugin.request_timeout = s.request_timeout
        resp = plugin.call("Configure", req)
        events = resp.events
        if events:
            extra = events & ~api.VALID_EVENTS
            if extra:
                raise ValueError(
                    f"NRI plugin {plugin.name} subscribed to invalid events 0x{extra:x}"
                )
        else:
            events = api.VALID_EVENTS
        plugin.events = events
        if resp.request_timeout > 0:
            plugin.request_timeout = resp.request_timeout / 1000

    def _synchronize(self, plugin: RemotePlugin) -> None:
        pods, containers = self._snapshot()
        chunks = list(_sync_chunks(pods, containers))
        for i, (pod_chunk, ctr_chunk) in enumerate(chunks):
            more = i < len(chunks) - 1
            req = api.SynchronizeRequest(pods=pod_chunk, containers=ctr_chunk, more=more)
            resp = plugin.call("Synchronize", req)
            if more and (resp.update or resp.more != more):
                raise PluginGone(f"NRI plugin {plugin.name} does not handle split sync requests")
            if not more:
                self._apply_updates(plugin, resp.update)

    def _plugin_closed(self, plugin: RemotePlugin, reason: str) -> None:
        log.info("NRI: connection to plugin %s closed (%s)", plugin.name, reason)
        # Not under self._lock: an event holding it may be what noticed the close.
        plugins = self.plugins
        if plugin in plugins:
            try:
                plugins.remove(plugin)
            except ValueError:
                pass

    # --- updates from plugins ----------------------------------------------------

    def _plugin_update(self, plugin: RemotePlugin, req: Any) -> list[Any]:
        failed = self._apply_updates(plugin, req.update)
        for ev in req.evict:
            try:
                self._evict(ev.container_id, ev.reason)
            except Exception as e:  # noqa: BLE001 - reported to the log; NRI has no failed-evict list
                log.error("NRI plugin %s: evicting %s failed: %s", plugin.name, ev.container_id, e)
        return failed

    def _apply_updates(self, plugin: RemotePlugin, updates: Any) -> list[Any]:
        failed = []
        for u in updates:
            try:
                self._update(u.container_id, u.linux.resources)
            except Exception as e:  # noqa: BLE001 - each failure is reported back
                if not u.ignore_failure:
                    log.error(
                        "NRI plugin %s: updating container %s failed: %s",
                        plugin.name,
                        u.container_id,
                        e,
                    )
                    failed.append(u)
        return failed

    # --- events ------------------------------------------------------------------

    def _deliver(self, event: str, method: str, request: Any, refusable: bool) -> Iterator[Any]:
        """Call ``method`` on each subscribed plugin in order; yields (plugin, response)."""
        bit = api.event_bit(EV(event))
        for plugin in list(self.plugins):
            if plugin.closed or not plugin.events & bit:
                continue
            try:
                yield plugin, plugin.event(method, request)
            except PluginGone:
                continue
            except TtrpcError as e:
                if refusable:
                    raise PluginError(
                        f"NRI plugin {plugin.name} failed {method}: {e.message}"
                    ) from e
                log.error("NRI plugin %s failed %s: %s", plugin.name, method, e.message)

    def wants(self, event: str) -> bool:
        """Whether a connected plugin is subscribed to ``event``: if none is, the
        caller need not build the request at all.

        Under the lock that admission holds: a plugin admitted after this
        answered no took its Synchronize snapshot later, and so saw the change
        the event would have told it of.
        """
        bit = api.event_bit(EV(event))
        with self._lock:
            return any(not p.closed and p.events & bit for p in self.plugins)

    def notify(
        self, event: str, method: str, request: Any, refusable: bool = False, updates: bool = True
    ) -> list[tuple[RemotePlugin, Any]]:
        """Deliver an event; with ``updates`` apply the container updates plugins answer with."""
        with self._lock:
            answers = list(self._deliver(event, method, request, refusable))
            if updates:
                for plugin, resp in answers:
                    if getattr(resp, "update", None):
                        self._apply_updates(plugin, resp.update)
            return answers

    def apply_updates(self, plugin: RemotePlugin, updates: Any) -> list[Any]:
        return self._apply_updates(plugin, updates)

    def create_container(self, request: Any, adjuster: Any) -> None:
        """CreateContainer: every subscribed plugin's adjustment goes to ``adjuster``.

        Then validators (plugins subscribed to VALIDATE_CONTAINER_ADJUSTMENT)
        see the pristine container, the combined adjustment and updates, and
        who was consulted; one rejecting fails the creation.
        """
        with self._lock:
            combined = api.ContainerAdjustment()
            updates: list[Any] = []
            consulted = []
            for plugin, resp in self._deliver(
                "CREATE_CONTAINER", "CreateContainer", request, refusable=True
            ):
                consulted.append(api.PluginInstance(name=plugin.base, index=plugin.idx))
                if resp.HasField("adjust"):
                    adjuster.apply(plugin.name, resp.adjust)
                    combined.MergeFrom(resp.adjust)
                updates.extend(resp.update)
                if resp.update:
                    self._apply_updates(plugin, resp.update)
                for ev in resp.evict:
                    self._evict(ev.container_id, ev.reason)
            validate = api.ValidateContainerAdjustmentRequest(
                pod=request.pod,
                container=request.container,
                adjust=combined,
                update=updates,
                plugins=consulted,
            )
            validate.owners.owners[request.container.id].CopyFrom(adjuster.field_owners())
            for plugin, resp in self._deliver(
                "VALIDATE_CONTAINER_ADJUSTMENT",
                "ValidateContainerAdjustment",
                validate,
                refusable=True,
            ):
                if resp.reject:
                    raise PluginError(
                        f"NRI validator {plugin.name} rejected the adjustments of container"
                        f" {request.container.name!r}: {resp.reason or 'no reason given'}"
                    )


def _sync_chunks(pods: list[Any], containers: list[Any]) -> Iterator[tuple[list[Any], list[Any]]]:
    """Pods then containers, in requests of at most about SYNC_CHUNK bytes each."""
    chunk_pods: list[Any] = []
    chunk_ctrs: list[Any] = []
    size = 0
    for kind, items in (("pod", pods), ("ctr", containers)):
        for item in items:
            n = item.ByteSize()
            if size + n > SYNC_CHUNK and (chunk_pods or chunk_ctrs):
                yield chunk_pods, chunk_ctrs
                chunk_pods, chunk_ctrs, size = [], [], 0
            (chunk_pods if kind == "pod" else chunk_ctrs).append(item)
            size += n
    yield chunk_pods, chunk_ctrs


def _in_use(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
