"""Which cgroup hierarchies this machine has: v1, hybrid or v2 (unified).

The driver must know, for each controller, which mount holds it: on v1 each
controller (or a co-mounted group such as ``cpu,cpuacct``) is its own
hierarchy; on v2 one hierarchy holds every controller; on a *hybrid* machine
the v1 controllers are mounted as on v1 and a cgroup2 hierarchy is mounted
too (usually at ``/sys/fs/cgroup/unified``), often with no controllers in it.
/proc/self/mountinfo is the source of truth (it is what runc and the kubelet
read); parsing it is pure so it can be tested with sample text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pycrio.linux import mountinfo

#: Mount options of a cgroup v1 mount that are not controller names.
_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"}
)

MODE_V1 = "v1"
MODE_HYBRID = "hybrid"
MODE_V2 = "v2"
MODE_NONE = "none"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``controllers`` holds real controllers only; a named v1 hierarchy such as
    ``name=systemd`` has none and its name in ``name``. ``root`` is the
    mountinfo root field: "/" unless a sub-tree is bind-mounted or a cgroup
    namespace is in use.
    """

    mountpoint: str
    version: int
    controllers: frozenset[str] = frozenset()
    name: str = ""
    root: str = "/"


@dataclass(frozen=True)
class Layout:
    """The cgroup hierarchies of the machine and the mode they add up to.

    ``mode`` is ``v1`` (controllers on v1 only), ``hybrid`` (controllers on
    v1 and a cgroup2 mount beside them), ``v2`` (no v1 controller mounted)
    or ``none``. Resources go to v1 whenever any v1 controller is mounted,
    as runc and the kubelet do: a controller cannot be used in both at once.
    """

    mode: str
    v1: tuple[Hierarchy, ...] = ()
    unified: Hierarchy | None = None
    unified_controllers: frozenset[str] = field(default_factory=frozenset)

    @property
    def uses_v2(self) -> bool:
        """True when resources and stats go to the unified hierarchy."""
        return self.mode == MODE_V2

    def v1_mount(self, controller: str) -> str | None:
        """Mount point of the v1 hierarchy holding ``controller``, or None."""
        for h in self.v1:
            if controller in h.controllers:
                return h.mountpoint
        return None

    def managed_mounts(self) -> list[str]:
        """Mount points a pod cgroup is created in.

        v1 and hybrid: every v1 hierarchy (named ones too, like the kubelet's
        cgroupfs manager and runc, which join ``name=systemd``) and, on a
        hybrid machine, the unified one so that a runtime that also places
        containers there finds the parent (nothing is written to it). v2:
        the unified hierarchy only.
        """
        if self.mode == MODE_V2:
            return [self.unified.mountpoint] if self.unified else []
        mounts = [h.mountpoint for h in self.v1]
        if self.unified is not None:
            mounts.append(self.unified.mountpoint)
        return mounts

    def all_mounts(self) -> list[str]:
        """Every cgroup mount point: what remove() cleans, whatever the mode."""
        mounts = [h.mountpoint for h in self.v1]
        if self.unified is not None:
            mounts.append(self.unified.mountpoint)
        return mounts


def parse_mountinfo(text: str | bytes, unified_controllers: frozenset[str] = frozenset()) -> Layout:
    """Build a Layout from the text of /proc/<pid>/mountinfo.

    ``unified_controllers`` is the content of the cgroup2 root's
    cgroup.controllers (read by :func:`detect`; passed in so this stays pure).
    When a hierarchy is mounted more than once the mount of its real root
    ("/") wins, then the first one.
    """
    v1: dict[frozenset[str], Hierarchy] = {}
    unified: Hierarchy | None = None
    for mount in mountinfo.parse(text):
        fstype, root, mountpoint = mount.fstype, mount.root, mount.mount_point
        if fstype == "cgroup2":
            if unified is None or (unified.root != "/" and root == "/"):
                unified = Hierarchy(mountpoint, 2, frozenset(unified_controllers), root=root)
        elif fstype == "cgroup":
            controllers: set[str] = set()
            name = ""
            for opt in mount.super_options:
                if opt.startswith("name="):
                    name = opt[len("name=") :]
                elif opt and "=" not in opt and opt not in _NON_CONTROLLER_OPTIONS:
                    controllers.add(opt)
            key = frozenset(controllers | ({f"name={name}"} if name else set()))
            if not key:
                continue
            known = v1.get(key)
            if known is None or (known.root != "/" and root == "/"):
                v1[key] = Hierarchy(mountpoint, 1, frozenset(controllers), name, root)
    hierarchies = tuple(sorted(v1.values(), key=lambda h: h.mountpoint))
    if any(h.controllers for h in hierarchies):
        mode = MODE_HYBRID if unified is not None else MODE_V1
    elif unified is not None:
        mode = MODE_V2
    else:
        mode = MODE_NONE
    return Layout(mode, hierarchies, unified, frozenset(unified_controllers))


def detect(mountinfo_path: str = "/proc/self/mountinfo") -> Layout:
    """The Layout of the running machine (as this process sees it)."""
    with open(mountinfo_path, "rb") as f:
        text = f.read()
    first = parse_mountinfo(text)
    if first.unified is None:
        return first
    try:
        with open(f"{first.unified.mountpoint}/cgroup.controllers", encoding="ascii") as f:
            controllers = frozenset(f.read().split())
    except OSError:
        controllers = frozenset()
    return parse_mountinfo(text, controllers)
