"""The NRI plugin's options: CRI-O's ``[nri]`` keys, with CRI-O's defaults.

The core keeps ``[nri]`` as a table name (it is CRI-O's); what the keys mean
is this plugin's, so it declares them (see pycrio.kernel.options).
"""

from __future__ import annotations

from pycrio.kernel.options import BOOL, DURATION, STR, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        "nri",
        "enable_nri",
        BOOL,
        True,
        "Run the Node Resource Interface: NRI plugins see pod and container events and may"
        " adjust containers (needs the pycrio-nri plugin); see docs/nri.md.",
    ),
    Option(
        "nri",
        "nri_listen",
        STR,
        "/var/run/nri/nri.sock",
        "Socket external NRI plugins connect to (mode 0600).",
    ),
    Option(
        "nri",
        "nri_plugin_dir",
        STR,
        "/opt/nri/plugins",
        "Directory of pre-installed NRI plugins (executables named NN-name), started by the"
        " daemon.",
    ),
    Option(
        "nri",
        "nri_plugin_config_dir",
        STR,
        "/etc/nri/conf.d",
        "Configuration of pre-installed NRI plugins: NN-name.conf or name.conf.",
    ),
    Option(
        "nri",
        "nri_disable_connections",
        BOOL,
        False,
        "Do not accept external NRI plugins; only pre-installed ones run.",
    ),
    Option(
        "nri",
        "nri_plugin_registration_timeout",
        DURATION,
        "5s",
        "How long a connected NRI plugin has to register.",
    ),
    Option(
        "nri",
        "nri_plugin_request_timeout",
        DURATION,
        "2s",
        "How long an NRI plugin has to answer one event before it is disconnected.",
    ),
)
