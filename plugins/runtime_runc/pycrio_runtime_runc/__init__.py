"""pycrio's ``runc`` runtime driver: an OCI-CLI runtime monitored by conmon.

This distribution is the home of everything that drives a runtime with
runc's command line under conmon: :class:`OCIRuntimeCLI` (the
:class:`~pycrio.kernel.interfaces.RuntimeDriver`), conmon's protocol and
files, attach, exec and the exit-file watcher. runc's command line is the
reference it is written against, so :class:`RuncDriver` only names the
binary; other runtimes with the same command line (crun) subclass
:class:`OCIRuntimeCLI` from their own distribution.
"""

from __future__ import annotations

from typing import ClassVar

from pycrio_runtime_runc.driver import OCIRuntimeCLI, parse_state, runtime_message

__all__ = ["OCIRuntimeCLI", "RuncDriver", "parse_state", "runtime_message"]


class RuncDriver(OCIRuntimeCLI):
    """Runs a RuntimeClass handler's containers with runc under conmon."""

    default_binary: ClassVar[str] = "runc"
