"""Host port drivers for pycrio: ``iptables`` and ``nftables``.

Both map a host port to a pod's IP and container port with DNAT, as CRI-O's
hostport manager and the CNI ``portmap`` plugin do, for pod networks whose
configuration has no portmap plugin. They share validation, the conflict
check and the on-disk state (:mod:`pycrio_hostport.common`); only the way the
rules are written into the kernel differs.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
