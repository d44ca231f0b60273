"""OCI hooks for pycrio (entry points ``pycrio.plugins: oci_hooks`` and
``pycrio.commands: hooks``).

Modules: ``schema`` (reading and validating one hook file, schema 1.0.0),
``matcher`` (whether a hook applies to a container and injecting it into the
OCI spec), ``directories`` (the hooks directories, their precedence and
picking up changes without a restart), ``plugin`` (the pluggy hooks) and
``cli`` (``pycrio hooks validate|list``).
"""

__version__ = "0.1.0"
