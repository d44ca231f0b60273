"""Driver interfaces: what a plugin must implement to be chosen by configuration.

A driver is exactly one per role, picked by name from an entry-point group:

=================  ==========================================  ==================
group              chosen by                                   interface
=================  ==========================================  ==================
pycrio.runtime     [runtime.runtimes.<handler>] driver         RuntimeDriver
pycrio.cgroup      [runtime] cgroup_manager                    CgroupDriver
pycrio.network     [network] driver                            NetworkDriver
pycrio.hostport    [network] hostport_manager                  HostportDriver
=================  ==========================================  ==================

The entry point names a class; the kernel instantiates it with a
:class:`DriverContext`. Methods raise :mod:`pycrio.errors` exceptions so a
failure reaches the kubelet with the right status code. Everything here is
synchronous: the daemon serves each call on its own thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pycrio.config import Config
from pycrio.errors import Unimplemented

GROUP_RUNTIME = "pycrio.runtime"
GROUP_CGROUP = "pycrio.cgroup"
GROUP_NETWORK = "pycrio.network"
GROUP_HOSTPORT = "pycrio.hostport"
GROUP_PLUGINS = "pycrio.plugins"
DRIVER_GROUPS = (GROUP_RUNTIME, GROUP_CGROUP, GROUP_NETWORK, GROUP_HOSTPORT)


@dataclass(frozen=True)
class DriverContext:
    """What a driver is constructed with.

    ``options`` is the driver's own table: the handler table for a runtime
    driver, ``[plugins.<name>]`` for the others. ``state_dir`` is a directory
    under the daemon's root reserved for this driver (created on demand).
    """

    name: str
    config: Config
    options: dict[str, Any]
    state_dir: str
    run_dir: str


class Driver(abc.ABC):  # noqa: B024 - the roles below declare the abstract methods
    """Common base: a driver knows its context and can report readiness."""

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx

    def ready(self) -> tuple[bool, str, str]:
        """(ready, reason, message) for the Status call; ready by default."""
        return True, "", ""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources at shutdown."""


# --- pycrio.runtime ---------------------------------------------------------
#
# Who calls what, and when (the whole story is in docs/plugins.md, "Writing a
# runtime driver"):
#
# * at startup the core calls ``set_exit_listener`` once, then ``recover``
#   with the ids of the containers it remembers that had not exited;
# * CreateContainer writes the OCI bundle and calls ``create``; StartContainer
#   calls ``start``; StopContainer calls ``kill`` and waits for the exit the
#   driver pushes; RemoveContainer calls ``delete``;
# * the driver calls the exit listener, from any thread, exactly when a
#   container's process has ended (also for one that ended while the daemon
#   was down, from ``recover``). The core never reads a driver's files and
#   never polls: ContainerStatus and ListContainers are answered from memory.
# * offline, while no daemon runs, ``pycrio check [--repair]`` and ``pycrio
#   wipe`` build the driver with the same DriverContext and call only
#   ``leftover_processes``, ``leftover_files`` and ``remove_leftovers`` (no
#   exit listener, no recover): what the driver started or keeps for pods
#   and containers the core no longer has a record of.


@dataclass
class RuntimeState:
    """What the runtime reports about one container right now."""

    id: str
    status: str  # creating, created, running, paused, stopped
    pid: int = 0
    bundle: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodInfo:
    """The pod a container belongs to, as far as a runtime driver cares.

    ``cgroup_parent`` is the pod's cgroup (a cgroupfs path or a systemd slice,
    as the cgroup driver made it; "" when there is none): a driver puts its
    per-container helpers (a monitor, a shim) there, so they count against
    the pod and go with it.
    """

    id: str
    name: str = ""
    namespace: str = ""
    uid: str = ""
    cgroup_parent: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class CreateRequest:
    """Everything a runtime driver needs to create one container.

    ``bundle`` is a directory holding config.json (the OCI spec, with the
    rootfs already mounted at ``root.path``); it belongs to the core, which
    removes it after ``delete``. The driver writes the container's stdout and
    stderr to ``log_path`` in the CRI log format, and keeps whatever else it
    needs (pid files, sockets, exit records) in its own directories
    (``DriverContext.state_dir`` and ``run_dir``).
    """

    container_id: str
    bundle: str
    log_path: str
    pod: PodInfo
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_size_max: int = -1  # bytes; -1 for no limit
    #: Called with the monitor's pid before it starts the container, so the
    #: cgroup driver can put it in its cgroup (CgroupDriver.place_monitor);
    #: None leaves placement to the driver (``pod.cgroup_parent``).
    place_monitor: Callable[[int], None] | None = None


@dataclass(frozen=True)
class ExitStatus:
    """How a container's process ended, as the driver saw it.

    ``exit_code`` follows the shell: 128+signal for a signal death.
    ``finished_at`` is nanoseconds since the epoch. ``reason`` may be left
    "" for the core to derive (OOMKilled, Completed or Error, as CRI-O).
    """

    exit_code: int
    finished_at: int
    oom_killed: bool = False
    reason: str = ""
    message: str = ""


#: ``listener(container_id, status)``: called by the driver when a container exits.
ExitListener = Callable[[str, ExitStatus], None]

#: The stream an :class:`Attachment` chunk came from.
STDOUT = 1
STDERR = 2


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False


class ExecProcess(abc.ABC):
    """A process exec'd for a streaming session (``kubectl exec``), attached to fds.

    The streaming layer copies the client's stdin to ``stdin`` and ``stdout`` /
    ``stderr`` to the client. With a TTY, ``stdin`` and ``stdout`` are the same
    terminal and ``stderr`` is None.
    """

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None

    @abc.abstractmethod
    def resize(self, width: int, height: int) -> None:
        """Set the terminal size (TTY only) so the process sees SIGWINCH."""

    @abc.abstractmethod
    def wait(self) -> int:
        """Block until the process ends; its exit code (128+signal for a signal)."""

    @abc.abstractmethod
    def close_stdin(self) -> None:
        """The client's input ended: EOF for a pipe, end-of-file (^D) for a terminal."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill the process and what it started (the client went away)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the fds and files; after :meth:`wait` or :meth:`kill`."""


class Attachment(abc.ABC):
    """A live connection to a running container's stdio (``kubectl attach``).

    The streaming layer reads output with :meth:`recv` on one thread while
    others call :meth:`send`, :meth:`close_input` and :meth:`resize`;
    :meth:`close` (from any thread) makes a blocked :meth:`recv` return None.
    """

    @abc.abstractmethod
    def recv(self) -> tuple[int, bytes] | None:
        """The next chunk of output as (STDOUT or STDERR, bytes); None at the end."""

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Write to the container's stdin; OSError when the container is gone."""

    @abc.abstractmethod
    def close_input(self) -> None:
        """End the container's stdin (a stdin_once container sees EOF)."""

    @abc.abstractmethod
    def resize(self, width: int, height: int) -> None:
        """Resize the container's terminal (TTY containers)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect; the container keeps running."""


@dataclass(frozen=True)
class LeftoverProcess:
    """A process a runtime driver started and that still runs, found offline.

    ``what`` names it for the operator with the id it serves, e.g.
    ``monitor of <container id>``, ``container <container id>`` (its init),
    ``shim of pod <pod id>``; the maintenance commands print it as is.
    """

    pid: int
    what: str


@dataclass(frozen=True)
class RuntimeFeatures:
    """What the Status call reports for a handler (CRI RuntimeHandlerFeatures)."""

    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


class RuntimeDriver(Driver):
    """Runs containers for one RuntimeClass handler, and owns their whole life.

    The driver supervises each container so that it outlives the daemon,
    records how it exits (even while the daemon is down) and tells the core
    through the exit listener. Every call has a timeout and raises
    pycrio.errors errors: NotFound when the runtime does not know the
    container, Internal (with the runtime's message) when the runtime fails,
    Unimplemented for an optional operation the driver lacks.
    """

    _exit_listener: ExitListener | None = None

    #: True for a runtime that builds the pod's sandbox from the pod's first
    #: container (a VM runtime: the VM is the sandbox): the core then always
    #: creates the pod's infra (pause) container, marked ``sandbox`` in the
    #: container-type annotations, even with ``drop_infra_ctr`` (as CRI-O does
    #: for runtime_type "vm"), and removes it after the pod's other containers.
    needs_pod_sandbox_container: bool = False

    # --- exits ------------------------------------------------------------

    def set_exit_listener(self, listener: ExitListener) -> None:
        """The core's callback for exits; called once at startup, before ``recover``.

        From then on the driver calls ``listener(container_id, status)`` once
        per container exit it observes, from any thread, without holding locks
        the core could wait on. A driver that keeps a watcher thread starts it
        here. Calling the listener twice for one exit is harmless.
        """
        self._exit_listener = listener

    def notify_exit(self, container_id: str, status: ExitStatus) -> None:
        """Hand one exit to the core (a helper for drivers)."""
        listener = self._exit_listener
        if listener is not None:
            listener(container_id, status)

    @abc.abstractmethod
    def exit_status(self, container_id: str) -> ExitStatus | None:
        """How the container ended, or None while it has not (or is unknown).

        The core asks this rarely (after a stop that saw no pushed exit), never
        on a status call.
        """

    def recover(self, container_ids: list[str]) -> dict[str, ExitStatus]:
        """After a daemon restart: take these containers back.

        ``container_ids`` are the containers the core remembers as created or
        running. The driver reconnects to whatever supervises them and
        returns the exits it learns happened while the daemon was down; later
        exits it pushes through the listener. The default asks
        :meth:`exit_status` for each.
        """
        exits = {}
        for cid in container_ids:
            status = self.exit_status(cid)
            if status is not None:
                exits[cid] = status
        return exits

    # --- lifecycle --------------------------------------------------------

    @abc.abstractmethod
    def create(self, request: CreateRequest) -> int:
        """Create the container, left ``created``; return the pid of its init process.

        A failed create leaves nothing behind in the runtime.
        """

    @abc.abstractmethod
    def start(self, container_id: str) -> None: ...

    @abc.abstractmethod
    def state(self, container_id: str) -> RuntimeState:
        """Current state; raises pycrio.errors.NotFound if the runtime does not know it."""

    @abc.abstractmethod
    def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        """Signal the container's init (or all its processes); a stopped one is not an error."""

    @abc.abstractmethod
    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Forget the container and everything the driver kept for it.

        Deleting an unknown one is not an error; a running one without
        ``force`` is FailedPrecondition.
        """

    # --- IO ---------------------------------------------------------------

    @abc.abstractmethod
    def exec_sync(
        self, container_id: str, argv: list[str], timeout: float, *, max_output: int = 16 << 20
    ) -> ExecResult:
        """Run ``argv`` in the container and wait for it.

        The process (and what it started) is killed when ``timeout`` (seconds,
        0 for none) passes; then ``timed_out`` is True. Output beyond
        ``max_output`` bytes per stream is dropped.
        """

    def exec_start(
        self, container_id: str, argv: list[str], *, tty: bool, stdin: bool
    ) -> ExecProcess:
        """Start ``argv`` in the container for a streaming exec, without waiting."""
        raise Unimplemented(f"the {type(self).__name__} driver has no streaming exec")

    def attach(self, container_id: str) -> Attachment:
        """Connect to the running container's stdio (CRI Attach)."""
        raise Unimplemented(f"the {type(self).__name__} driver cannot attach to containers")

    def reopen_log(self, container_id: str) -> None:
        """Reopen ``log_path`` (the kubelet rotated it away); returns once it exists again."""
        raise Unimplemented(f"the {type(self).__name__} driver cannot reopen container logs")

    # --- resources --------------------------------------------------------

    @abc.abstractmethod
    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply an OCI ``linux.resources`` object to a running container."""

    def pause(self, container_id: str) -> None:
        raise Unimplemented(f"the {type(self).__name__} driver cannot pause containers")

    def resume(self, container_id: str) -> None:
        raise Unimplemented(f"the {type(self).__name__} driver cannot resume containers")

    def stats(self, container_id: str) -> CgroupStats:
        """Usage of one container, for drivers whose containers the cgroup driver cannot see
        (a VM); the core reads the container's cgroup itself otherwise."""
        raise Unimplemented(f"the {type(self).__name__} driver reports no container stats")

    def features(self) -> RuntimeFeatures:
        """What the handler supports, for the Status call."""
        return RuntimeFeatures()

    # --- offline maintenance (pycrio check / pycrio wipe) -----------------
    #
    # Called while no daemon runs (the caller holds the daemon's locks), on a
    # driver just constructed from its DriverContext: nothing from a daemon
    # run is in memory, so the answer comes from the driver's own files and
    # the process table. ``known_ids`` holds every pod id and container id
    # the core has a record of; what serves none of them is left over.
    # `pycrio wipe` passes no ids (everything goes); `pycrio check` passes
    # all of its records, and when it drops a broken container record, all
    # but that one. Each call is optional: the defaults report nothing, and
    # Unimplemented (or any pycrio error) is printed as a note, never fatal.

    def leftover_processes(self, known_ids: Collection[str]) -> list[LeftoverProcess]:
        """The processes this driver started for pods or containers not in ``known_ids``
        that still run: monitors (conmon), shims, the runtime's container init processes.

        The core SIGKILLs every pid returned, so identify each one exactly: by
        its pid *and* something only it has (the start time the runtime
        recorded for it, or a pid file written after it started together with
        an argv naming that very file), never by a command line that merely
        contains a path of ours: another daemon's processes and an operator's
        ``tail -f`` of a log must survive (:mod:`pycrio.linux.processes` has
        the checks). A process that serves several ids (a shim per pod serving
        its containers) is left over only when none of its ids is known.
        Whatever runs inside a container's or pod's cgroup the core finds and
        kills itself (through the cgroup driver); list what runs outside it.

        For runc + conmon: the init from runc's ``state.json`` (pid and start
        time), conmon from its ``-P`` pid file. For a containerd shim v2: the
        pid in the shim's pid file in its bundle, confirmed by its argv (``-id
        <id>``, the address it was started with) and a start before the file
        was written; a VM's hypervisor, if the shim does not take it down.
        """
        return []

    def leftover_files(self, known_ids: Collection[str]) -> list[str]:
        """Paths in this driver's own directories that serve no pod or container in
        ``known_ids`` (or nothing at all offline, like the files of an exec in
        progress): the runtime's state of a container, pid files, exit records,
        sockets, FIFOs, a shim's bundle or work directory.

        ``pycrio check`` reports each one. A directory the operator may share
        with other programs (a configured runtime root or socket directory)
        counts only for what the driver can prove is its own.
        """
        return []

    def remove_leftovers(self, known_ids: Collection[str]) -> list[str]:
        """Remove what :meth:`leftover_files` reports, and whatever else the driver made
        for those ids outside the core's directories (mounts, cgroups of its monitors).

        Called after the leftover processes were killed (``pycrio wipe``,
        ``pycrio check --repair``). Returns one line per thing that could not
        be removed, saying why; removing what is already gone is not an error.
        """
        return []


# --- pycrio.cgroup ----------------------------------------------------------

#: The resources dict used by cgroup drivers: the OCI runtime-spec
#: ``linux.resources`` object (camelCase keys), e.g.
#: {"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
#:  "memory": {"limit": 268435456}, "pids": {"limit": 100},
#:  "hugepageLimits": [{"pageSize": "2MB", "limit": 0}], "unified": {...}}.
Resources = dict[str, Any]


@dataclass
class BlkioDevice:
    """Block I/O of a cgroup on one device: bytes and operations by kind.

    Kinds are the kernel's: ``Read``, ``Write``, ``Sync``, ``Async``,
    ``Discard`` and ``Total`` (v2's io.stat gives Read, Write, Discard; the
    driver adds Total).
    """

    major: int
    minor: int
    bytes: dict[str, int] = field(default_factory=dict)
    ios: dict[str, int] = field(default_factory=dict)


@dataclass
class PressureTotals:
    """Pressure stall information of one resource: total stalled time in microseconds.

    ``some``: time at least one task waited; ``full``: time all tasks did.
    """

    some_us: int = 0
    full_us: int = 0


@dataclass
class CgroupStats:
    """Usage counters and limits read from a cgroup (0 when the controller is absent).

    Everything the kubelet's summary API and the cadvisor-named CRI metrics are
    built from. Limits are 0 when unlimited. ``memory_available_bytes`` is
    None when the cgroup has no memory limit (the kubelet then leaves
    ``available_bytes`` unset). ``processes`` lists the pids of every process
    in the cgroup and in the cgroups below it. ``hugetlb`` and ``pressure``
    are empty when the node cannot measure them (see CgroupDriver.measurable).
    """

    cpu_usage_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    cpu_periods: int = 0
    cpu_throttled_periods: int = 0
    cpu_throttled_ns: int = 0
    memory_usage_bytes: int = 0
    memory_max_usage_bytes: int = 0
    memory_working_set_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_cache_bytes: int = 0
    memory_mapped_file_bytes: int = 0
    memory_swap_bytes: int = 0
    memory_kernel_bytes: int = 0
    memory_failcnt: int = 0
    memory_oom_kills: int = 0
    memory_page_faults: int = 0
    memory_major_page_faults: int = 0
    memory_available_bytes: int | None = None
    pids: int = 0
    pids_limit: int = 0
    processes: list[int] = field(default_factory=list)
    cpu_shares: int = 0
    cpu_quota_us: int = 0
    cpu_period_us: int = 0
    memory_limit_bytes: int = 0
    memory_reservation_bytes: int = 0
    memory_swap_limit_bytes: int = 0
    blkio: list[BlkioDevice] = field(default_factory=list)
    hugetlb: dict[str, tuple[int, int]] = field(default_factory=dict)  # size -> (usage, max usage)
    pressure: dict[str, PressureTotals] = field(default_factory=dict)  # "cpu", "memory", "io"


#: What CgroupDriver.measurable() may report beyond the basic counters.
MEASURE_HUGETLB = "hugetlb"
MEASURE_PRESSURE = "pressure"
MEASURE_CPU_QUOTA = "cpu_quota"
MEASURE_MEMORY_RESERVATION = "memory_reservation"


class CgroupDriver(Driver):
    """Places pods and containers in cgroups and reads their usage back.

    A *path* is what this driver returns from ``pod_cgroup`` and accepts
    everywhere else: for cgroupfs a path relative to each hierarchy's root
    (``/kubepods/besteffort/pod<uid>``), for systemd a slice name.
    """

    #: The value RuntimeConfig reports so the kubelet can check it agrees:
    #: "systemd" or "cgroupfs" (runtime.v1 CgroupDriver).
    cri_cgroup_driver: str = "cgroupfs"

    @abc.abstractmethod
    def pod_cgroup(self, cgroup_parent: str, pod_id: str, resources: Resources) -> str:
        """Create the pod's cgroup under the kubelet's parent with its resources; return its path.

        The kubelet normally passes the pod's own cgroup as cgroup_parent
        (``/kubepods/burstable/pod<uid>``); the driver creates it if missing and
        applies ``resources`` (the pod's limits plus its overhead).
        """

    @abc.abstractmethod
    def update(self, path: str, resources: Resources) -> None:
        """Apply new resources to an existing cgroup (UpdatePodSandboxResources)."""

    @abc.abstractmethod
    def container_cgroups_path(self, pod_cgroup: str, container_id: str) -> str:
        """The OCI ``linux.cgroupsPath`` for a container of this pod."""

    @abc.abstractmethod
    def remove(self, path: str) -> None:
        """Remove a cgroup (killing nothing); removing one that does not exist is not an error.

        Also called offline, while no daemon runs (``pycrio wipe`` and
        ``pycrio check --repair`` on a driver just constructed), with the
        paths the core recorded: it must not depend on what a daemon run kept
        in memory. The systemd driver stops the unit over D-Bus; cgroupfs
        rmdirs the directories.
        """

    @abc.abstractmethod
    def stats(self, path: str) -> CgroupStats:
        """Current usage of the cgroup; raises pycrio.errors.NotFound if it is gone.

        Offline, the maintenance commands read ``processes`` from it to find
        what still runs in a recorded pod's or container's cgroup (and kill
        exactly those pids), so that part must work without a daemon too.
        """

    def measurable(self) -> frozenset[str]:
        """Which optional CgroupStats parts this node fills in (``MEASURE_*``).

        The core describes a metric to the kubelet only when every pod can
        have a value for it; a driver that cannot tell returns nothing extra.
        """
        return frozenset()

    def place_monitor(self, pid: int, pod_cgroup: str, container_id: str) -> None:  # noqa: B027
        """Put a container's monitor process (conmon) where this driver keeps monitors.

        Called before the monitor starts the container. The systemd driver
        makes a scope for it (CRI-O's conmon_cgroup); by default it stays
        where the runtime driver put it.
        """


# --- pycrio.network ---------------------------------------------------------


@dataclass
class PortMapping:
    """A CRI PortMapping in CNI ``portMappings`` terms."""

    host_port: int
    container_port: int
    protocol: str = "tcp"  # tcp, udp or sctp
    host_ip: str = ""


@dataclass
class PodNetwork:
    """What a network driver needs to know about a pod."""

    pod_id: str
    name: str
    namespace: str
    uid: str
    netns_path: str
    port_mappings: list[PortMapping] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    #: CNI "bandwidth" capability: ingressRate/ingressBurst/egressRate/egressBurst.
    bandwidth: dict[str, int] = field(default_factory=dict)
    #: CNI "dns" capability: servers, searches, options.
    dns: dict[str, list[str]] = field(default_factory=dict)
    cgroup_path: str = ""


@dataclass
class NetworkStatus:
    """The pod's addresses, first the primary one (IPv4 before IPv6 when both)."""

    ips: list[str] = field(default_factory=list)
    interfaces: list[dict[str, Any]] = field(default_factory=list)


class NetworkDriver(Driver):
    """Attaches pods to the node's network. ``ready()`` feeds NetworkReady."""

    @abc.abstractmethod
    def setup(self, pod: PodNetwork) -> NetworkStatus:
        """Attach the pod; on failure leave nothing attached (undo what was done)."""

    @abc.abstractmethod
    def teardown(self, pod: PodNetwork) -> None:
        """Detach the pod; must work after a daemon restart and be idempotent."""

    def check(self, pod: PodNetwork) -> None:  # noqa: B027 - optional
        """Verify the pod's network is still as set up; raise if not."""

    def handles_port_mappings(self) -> bool:
        """True when the network itself maps host ports (a CNI portmap plugin).

        When False the kernel asks the hostport driver to map them instead.
        """
        return False


# --- pycrio.hostport --------------------------------------------------------


class HostportDriver(Driver):
    """Maps host ports to pod IPs for networks that lack a portmap plugin."""

    @abc.abstractmethod
    def add(self, pod_id: str, pod_ip: str, mappings: list[PortMapping]) -> None:
        """Install the mappings; a host port already mapped by another pod is FailedPrecondition."""

    @abc.abstractmethod
    def remove(self, pod_id: str) -> None:
        """Remove every mapping of the pod; idempotent, and works after a daemon restart."""


INTERFACE_OF_GROUP: dict[str, type[Driver]] = {
    GROUP_RUNTIME: RuntimeDriver,
    GROUP_CGROUP: CgroupDriver,
    GROUP_NETWORK: NetworkDriver,
    GROUP_HOSTPORT: HostportDriver,
}
