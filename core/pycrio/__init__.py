"""pycrio: a Kubernetes CRI daemon in Python."""

from importlib import metadata


def version() -> str:
    """The installed distribution's version: the one truth Version reports."""
    try:
        return metadata.version("pycrio")
    except metadata.PackageNotFoundError:
        return "0+unknown"
