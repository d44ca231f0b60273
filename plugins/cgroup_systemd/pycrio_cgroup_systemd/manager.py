"""A small client of systemd's manager API (org.freedesktop.systemd1) over D-Bus.

Why jeepney: it is pure Python and sans-IO (messages are built and parsed
without a socket), so there is no C extension or GLib main loop to carry.
One connection to the system bus is shared under a lock (jeepney's blocking
connection is not thread-safe; the calls are short). A call that fails
because systemd is re-executing (``systemctl daemon-reexec``, an upgrade) or
the bus went away is retried on a new connection until ``timeout``: the pods
keep running meanwhile and the kubelet's call should not fail for it.

Jobs are waited for by polling the unit's ActiveState (no signal
subscription to keep in step), which is what the callers need anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from jeepney import DBusAddress, DBusErrorResponse, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from pycrio.errors import DeadlineExceeded, FailedPrecondition, Internal, Unavailable

from .properties import Property

log = logging.getLogger("pycrio.cgroup.systemd")

MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"
#: Errors that mean "systemd is not answering right now": retried.
_TRANSIENT = {
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
}
_POLL = 0.02


class SystemdError(Exception):
    """systemd answered a call with a D-Bus error."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class Manager:
    """The calls the driver makes; every one bounded by ``timeout`` seconds."""

    def __init__(self, bus: str = "SYSTEM", timeout: float = 10.0) -> None:
        self.bus = bus
        self.timeout = timeout
        self._conn: DBusConnection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _call(self, message_factory: Any) -> tuple[Any, ...]:
        """Send one call, reconnecting and retrying while systemd or the bus is away."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        last = ""
        with self._lock:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if self._conn is None:
                        self._conn = open_dbus_connection(
                            self.bus, auth_timeout=max(remaining, 0.1)
                        )
                    reply = self._conn.send_and_get_reply(
                        message_factory(), timeout=max(remaining, 0.1)
                    )
                    return unwrap_msg(reply)
                except DBusErrorResponse as e:
                    name = e.name or "org.freedesktop.DBus.Error.Failed"
                    text = str(e.data[0]) if e.data else ""
                    if name not in _TRANSIENT:
                        raise SystemdError(name, text) from None
                    last = f"{name}: {text}"
                except (OSError, TimeoutError, ValueError) as e:
                    # the socket closed (dbus restarted) or the reply timed out
                    self._drop()
                    last = f"{type(e).__name__}: {e}"
                if time.monotonic() + delay >= deadline:
                    raise Unavailable(
                        f"systemd did not answer over D-Bus ({self.bus}) within"
                        f" {self.timeout:g}s: {last}"
                    )
                log.debug("systemd D-Bus call failed (%s); retrying", last)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    # --- manager calls ------------------------------------------------------

    def start_transient_unit(self, name: str, properties: list[Property]) -> None:
        """StartTransientUnit in mode "fail"; UnitExists is raised as SystemdError."""
        self._call(
            lambda: new_method_call(
                MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "fail", properties, [])
            )
        )

    def set_unit_properties(self, name: str, properties: list[Property]) -> None:
        """SetUnitProperties(runtime=true): lasts until reboot, like the unit itself."""
        if properties:
            self._call(
                lambda: new_method_call(
                    MANAGER, "SetUnitProperties", "sba(sv)", (name, True, properties)
                )
            )

    def stop_unit(self, name: str) -> None:
        self._call(lambda: new_method_call(MANAGER, "StopUnit", "ss", (name, "replace")))

    def reset_failed_unit(self, name: str) -> None:
        try:
            self._call(lambda: new_method_call(MANAGER, "ResetFailedUnit", "s", (name,)))
        except SystemdError as e:
            if e.name != NO_SUCH_UNIT:
                raise

    def unit_path(self, name: str) -> str | None:
        """The unit's object path when it is loaded, else None."""
        try:
            (path,) = self._call(lambda: new_method_call(MANAGER, "GetUnit", "s", (name,)))
        except SystemdError as e:
            if e.name == NO_SUCH_UNIT:
                return None
            raise
        return str(path)

    def unit_property(self, name: str, prop: str, interface: str = UNIT_INTERFACE) -> Any:
        """A property of a loaded unit, or None when the unit is not loaded."""
        path = self.unit_path(name)
        if path is None:
            return None
        address = DBusAddress(path, bus_name=MANAGER.bus_name, interface=interface)
        try:
            ((_signature, value),) = self._call(lambda: Properties(address).get(prop))
        except SystemdError as e:
            if e.name in (NO_SUCH_UNIT, "org.freedesktop.DBus.Error.UnknownObject"):
                return None
            raise
        return value

    def active_state(self, name: str) -> str | None:
        """ActiveState ("active", "inactive", "failed", ...) or None when not loaded."""
        state = self.unit_property(name, "ActiveState")
        return None if state is None else str(state)

    # --- waiting for jobs ---------------------------------------------------

    def wait_active(self, name: str) -> None:
        """Wait for a started unit to become active; its job failing is an error."""
        deadline = time.monotonic() + self.timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.active_state(name)
            if state == "active":
                return
            if state == "failed":
                raise FailedPrecondition(f"systemd could not start {name} (unit failed)")
            time.sleep(_POLL)
        raise DeadlineExceeded(f"{name} is not active after {self.timeout:g}s (state {state})")

    def wait_gone(self, name: str) -> None:
        """Wait for a stopped unit to be inactive or unloaded."""
        deadline = time.monotonic() + self.timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.active_state(name)
            if state in (None, "inactive"):
                return
            if state == "failed":
                self.reset_failed_unit(name)
                return
            time.sleep(_POLL)
        raise Internal(f"systemd did not stop {name} within {self.timeout:g}s (state {state})")
