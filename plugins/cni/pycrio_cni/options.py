"""``[plugins.cni]``: the CNI network driver's options, declared for the loader.

Where the networks and plugins are is the core's ``[network]`` table
(network_dir, plugin_dirs, cni_default_network), as in CRI-O.
"""

from __future__ import annotations

from pycrio.kernel.options import SECONDS, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        "plugins.cni",
        "timeout",
        SECONDS,
        60.0,
        "How long one CNI plugin call (ADD, DEL, CHECK, STATUS) may take: seconds or a"
        ' duration such as "90s".',
    ),
    Option(
        "plugins.cni",
        "poll_interval",
        SECONDS,
        1.0,
        "How often network_dir is checked for a changed configuration: seconds or a duration.",
    ),
)
