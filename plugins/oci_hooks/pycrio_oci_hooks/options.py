"""The OCI hooks plugin's options: ``[plugins.oci_hooks] dirs`` and CRI-O's ``[runtime] hooks_dir``.

See :mod:`pycrio_oci_hooks.plugin` for which one wins.
"""

from __future__ import annotations

from pycrio.kernel.options import STR_LIST, STR_OR_LIST, Option
from pycrio_oci_hooks.directories import DEFAULT_DIRS

OPTIONS: tuple[Option, ...] = (
    Option(
        "plugins.oci_hooks",
        "dirs",
        STR_LIST,
        None,
        "Hooks directories, later ones overriding earlier ones by file name; when set,"
        " [runtime] hooks_dir is ignored. An empty list injects no hooks.",
        reloadable=True,
    ),
    Option(
        "runtime",
        "hooks_dir",
        STR_OR_LIST,
        list(DEFAULT_DIRS),
        "Hooks directories (OCI hooks schema 1.0.0 JSON files), as in CRI-O; used when"
        " [plugins.oci_hooks] dirs is not set.",
        reloadable=True,
    ),
)
