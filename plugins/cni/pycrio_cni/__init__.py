"""pycrio's CNI network driver (entry point ``pycrio.network: cni``).

Modules: ``config`` (reading and choosing network configs), ``payload``
(what a plugin gets on stdin and in its environment), ``result`` (what it
prints), ``invoke`` (running binaries with deadlines), ``cache`` (what each
pod was attached with, on disk) and ``driver`` (the NetworkDriver).
"""

__version__ = "0.1.0"
