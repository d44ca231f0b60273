"""pycrio: a Kubernetes CRI daemon in Python."""


def version() -> str:
    """The installed distribution's version: the one truth Version reports."""
    from importlib import metadata  # here: importing pycrio stays cheap for worker processes

    try:
        return metadata.version("pycrio")
    except metadata.PackageNotFoundError:
        return "0+unknown"
