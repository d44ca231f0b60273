"""OCI runtimes driven through their command line, monitored by conmon.

``OCIRuntimeCLI`` is the base of the runc and crun drivers; ``conmon`` has
the monitor's protocol and the helpers the container code reads conmon's
files with (exit code, OOM, attach socket, log reopen).
"""

from __future__ import annotations

from pycrio.oci import conmon
from pycrio.oci.runtime_cli import OCIRuntimeCLI, parse_state, runtime_message

__all__ = ["OCIRuntimeCLI", "conmon", "parse_state", "runtime_message"]
