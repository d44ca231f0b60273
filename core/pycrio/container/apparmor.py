"""The container's AppArmor profile, only where the host runs AppArmor.

runc fails a container whose spec names a profile on a host without
AppArmor, so nothing is set unless ``/sys/module/apparmor/parameters/enabled``
says ``Y``. RuntimeDefault maps to ``pycrio-default``: that profile must be
loaded by the node's installation (``apparmor_parser``); while it is not,
the container runs without a profile and a warning is logged, which is what
CRI-O does on hosts where its default profile cannot be installed.
"""

from __future__ import annotations

import logging

from cri_api.v1 import api_pb2

from pycrio.errors import InvalidArgument

log = logging.getLogger("pycrio.container")

DEFAULT_PROFILE = "pycrio-default"
ENABLED_PATH = "/sys/module/apparmor/parameters/enabled"
PROFILES_PATH = "/sys/kernel/security/apparmor/profiles"

RUNTIME_DEFAULT = api_pb2.SecurityProfile.ProfileType.Value("RuntimeDefault")
UNCONFINED = api_pb2.SecurityProfile.ProfileType.Value("Unconfined")
LOCALHOST = api_pb2.SecurityProfile.ProfileType.Value("Localhost")


def host_enabled(path: str = ENABLED_PATH) -> bool:
    """Whether the kernel has AppArmor on."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def loaded_profiles(path: str = PROFILES_PATH) -> frozenset[str]:
    """Names of the loaded profiles (lines look like ``name (enforce)``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return frozenset(line.rsplit(" (", 1)[0] for line in f if line.strip())
    except OSError:
        return frozenset()


def select(security_context: api_pb2.LinuxContainerSecurityContext) -> tuple[int, str]:
    """(profile type, localhost profile name) asked for, the deprecated string included."""
    if security_context.HasField("apparmor"):
        profile = security_context.apparmor
        kind = profile.profile_type
        if kind == LOCALHOST:
            name = profile.localhost_ref.removeprefix("localhost/")
            if not name:
                raise InvalidArgument("apparmor: Localhost profile without localhost_ref")
            return LOCALHOST, name
        if kind not in (RUNTIME_DEFAULT, UNCONFINED):
            raise InvalidArgument(f"apparmor: unknown profile_type {kind}")
        return kind, ""
    legacy = security_context.apparmor_profile
    if legacy in ("", "runtime/default"):
        return RUNTIME_DEFAULT, ""
    if legacy == "unconfined":
        return UNCONFINED, ""
    if legacy.startswith("localhost/"):
        return LOCALHOST, legacy.removeprefix("localhost/")
    raise InvalidArgument(f"apparmor_profile: unknown value {legacy!r}")


def profile_for(
    security_context: api_pb2.LinuxContainerSecurityContext,
    privileged: bool,
    enabled: bool,
    loaded: frozenset[str],
) -> str:
    """``process.apparmorProfile`` ("" for none)."""
    kind, name = select(security_context)
    if privileged or not enabled or kind == UNCONFINED:
        return ""
    if kind == LOCALHOST:
        if name not in loaded:
            raise InvalidArgument(f"apparmor: profile {name!r} is not loaded on this node")
        return name
    if DEFAULT_PROFILE not in loaded:
        log.warning("AppArmor profile %s is not loaded: running without one", DEFAULT_PROFILE)
        return ""
    return DEFAULT_PROFILE
