"""pycrio's ``crun`` runtime driver.

crun takes runc's command line (create/start/state/kill/delete/exec/update/
pause/resume/features), so the OCI-CLI + conmon driver of pycrio-runtime-runc
does all the work; this only names the binary. Its own distribution so a
node installs the runtimes it has.
"""

from __future__ import annotations

from typing import ClassVar

from pycrio_runtime_runc import OCIRuntimeCLI

__all__ = ["CrunDriver"]


class CrunDriver(OCIRuntimeCLI):
    """Runs a RuntimeClass handler's containers with crun under conmon."""

    default_binary: ClassVar[str] = "crun"
