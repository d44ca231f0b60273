"""pycrio's ``vm`` runtime driver: containers run by a containerd shim v2 binary.

Kata Containers (``containerd-shim-kata-v2``) is the runtime this is for;
any shim speaking containerd's runtime v2 Task API works, which is how it
is tested here (containerd's ``containerd-shim-runc-v2``). Selected by
``runtime_type = "vm"`` (or ``driver = "vm"``) in a handler table.
"""

from __future__ import annotations

from pycrio_runtime_kata.driver import ShimV2Driver

__all__ = ["ShimV2Driver"]
