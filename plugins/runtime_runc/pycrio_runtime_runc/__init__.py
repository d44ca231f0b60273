"""pycrio's ``runc`` runtime driver.

Everything is in the core's OCI runtime CLI base (pycrio.oci): runc's
command line is the reference that base is written against, so the driver
only names the binary. Kept as its own distribution so a node installs
the runtimes it has, and so a handler's driver is chosen by configuration.
"""

from __future__ import annotations

from typing import ClassVar

from pycrio.oci import OCIRuntimeCLI

__all__ = ["RuncDriver"]


class RuncDriver(OCIRuntimeCLI):
    """Runs a RuntimeClass handler's containers with runc under conmon."""

    default_binary: ClassVar[str] = "runc"
