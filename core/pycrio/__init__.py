"""pycrio: a Kubernetes CRI daemon in Python."""

import functools


@functools.cache
def version() -> str:
    """The installed distribution's version: the one truth Version reports.

    Cached: looking it up reads the installed metadata from disk, and the
    kubelet calls Version often."""
    from importlib import metadata  # here: importing pycrio stays cheap for worker processes

    try:
        return metadata.version("pycrio")
    except metadata.PackageNotFoundError:
        return "0+unknown"
