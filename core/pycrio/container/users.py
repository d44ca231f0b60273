"""Which uid, gid and groups a container runs as, from the CRI and the image.

Names are resolved in the image's own ``/etc/passwd`` and ``/etc/group``
(never the host's): a user name means whatever the image says it means.
Parsing is pure; the only I/O is reading those two files through
:func:`pycrio.container.rootfs.read_file_in_root`, which stays inside the rootfs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cri_api.v1 import api_pb2

from pycrio.container.rootfs import read_file_in_root
from pycrio.errors import InvalidArgument

#: Highest id a 32-bit uid_t/gid_t can hold; (uid_t)-1 is reserved as "no change".
MAX_ID = 2**32 - 2

SUPPLEMENTAL_GROUPS_MERGE = api_pb2.SupplementalGroupsPolicy.Value("Merge")
SUPPLEMENTAL_GROUPS_STRICT = api_pb2.SupplementalGroupsPolicy.Value("Strict")


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedUser:
    """The OCI ``process.user`` plus the home directory for a default HOME."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str
    username: str = ""

    def to_oci(self) -> dict[str, object]:
        user: dict[str, object] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            user["additionalGids"] = list(self.additional_gids)
        return user


def _parse_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Parse passwd(5) lines; malformed lines are skipped, as glibc does."""
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        uid, gid = _parse_id(fields[2]), _parse_id(fields[3])
        if uid is None or gid is None or not fields[0]:
            continue
        home = fields[5] if len(fields) > 5 else ""
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Parse group(5) lines; malformed lines are skipped, as glibc does."""
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        gid = _parse_id(fields[2])
        if gid is None or not fields[0]:
            continue
        members = tuple(m for m in (fields[3].split(",") if len(fields) > 3 else []) if m)
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def read_passwd(rootfs: str) -> list[PasswdEntry]:
    """The image's users; an image without /etc/passwd has none (numeric ids still work)."""
    text = read_file_in_root(rootfs, "/etc/passwd")
    return parse_passwd(text) if text is not None else []


def read_group(rootfs: str) -> list[GroupEntry]:
    """The image's groups; an image without /etc/group has none."""
    text = read_file_in_root(rootfs, "/etc/group")
    return parse_group(text) if text is not None else []


def _by_uid(passwd: Sequence[PasswdEntry], uid: int) -> PasswdEntry | None:
    return next((e for e in passwd if e.uid == uid), None)


def _by_name(passwd: Sequence[PasswdEntry], name: str) -> PasswdEntry | None:
    return next((e for e in passwd if e.name == name), None)


def _group_gid(groups: Sequence[GroupEntry], spec: str, field: str) -> int:
    gid = _parse_id(spec)
    if gid is not None:
        return gid
    entry = next((g for g in groups if g.name == spec), None)
    if entry is None:
        raise InvalidArgument(f"{field}: group {spec!r} not found in the image's /etc/group")
    return entry.gid


def _check_id(value: int, field: str) -> int:
    if value < 0 or value > MAX_ID:
        raise InvalidArgument(f"{field}: {value} is not a valid id (0..{MAX_ID})")
    return value


def check_group_has_user(security_context: api_pb2.LinuxContainerSecurityContext) -> None:
    """run_as_group needs run_as_user or run_as_username, as in CRI-O and the kubelet.

    A group alone would mix the kubelet's gid with the image's user, which
    is not what the pod's author asked for (the image's USER may name its
    own group).
    """
    if (
        security_context.HasField("run_as_group")
        and not security_context.HasField("run_as_user")
        and not security_context.run_as_username
    ):
        raise InvalidArgument("user group is specified without user or username")


def resolve_user(
    security_context: api_pb2.LinuxContainerSecurityContext,
    image_user: str,
    passwd: Sequence[PasswdEntry],
    groups: Sequence[GroupEntry],
) -> ResolvedUser:
    """Apply the kubelet's precedence: run_as_user, run_as_username, the image's USER.

    run_as_group overrides any gid found; a user known only by number runs
    with gid 0 (Docker's and CRI-O's default). Supplemental groups follow
    the policy: Merge adds the groups the image lists the user in, Strict
    only the ones the kubelet sent. The primary gid is always part of the
    additional gids so that setgroups(2) never drops it (containerd does
    the same).
    """
    check_group_has_user(security_context)
    name = ""
    entry: PasswdEntry | None
    group_spec = ""
    if security_context.HasField("run_as_user"):
        uid = _check_id(security_context.run_as_user.value, "run_as_user")
        entry = _by_uid(passwd, uid)
        gid = entry.gid if entry else 0
    elif security_context.run_as_username:
        name = security_context.run_as_username
        entry = _by_name(passwd, name)
        if entry is None:
            raise InvalidArgument(
                f"run_as_username: user {name!r} not found in the image's /etc/passwd"
            )
        uid, gid = entry.uid, entry.gid
    else:
        user_spec, _, group_spec = image_user.partition(":")
        if not user_spec:
            if group_spec:
                raise InvalidArgument(f"image user {image_user!r}: missing the user part")
            user_spec = "0"
        numeric = _parse_id(user_spec)
        if numeric is not None:
            uid = numeric
            entry = _by_uid(passwd, uid)
            gid = entry.gid if entry else 0
        else:
            entry = _by_name(passwd, user_spec)
            if entry is None:
                raise InvalidArgument(
                    f"image user {image_user!r}: user {user_spec!r} not found in "
                    "the image's /etc/passwd"
                )
            uid, gid = entry.uid, entry.gid
        if group_spec:
            gid = _group_gid(groups, group_spec, f"image user {image_user!r}")
    if entry is not None:
        name = entry.name
    if security_context.HasField("run_as_group"):
        gid = _check_id(security_context.run_as_group.value, "run_as_group")

    policy = security_context.supplemental_groups_policy
    if policy not in (SUPPLEMENTAL_GROUPS_MERGE, SUPPLEMENTAL_GROUPS_STRICT):
        raise InvalidArgument(f"supplemental_groups_policy: unknown value {policy}")
    extra: list[int] = [gid]
    if policy == SUPPLEMENTAL_GROUPS_MERGE and name:
        extra += [g.gid for g in groups if name in g.members]
    for value in security_context.supplemental_groups:
        extra.append(_check_id(value, "supplemental_groups"))
    additional = tuple(dict.fromkeys(extra))
    home = entry.home if entry is not None and entry.home else "/"
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, home=home, username=name)
