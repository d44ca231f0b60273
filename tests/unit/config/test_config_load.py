from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pycrio.config import ConfigError, defaults, load
from pycrio.config.declared import Declarations, Owner
from pycrio.config.load import discover_declarations
from pycrio.config.schema import OPTIONS


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def empty_dir(tmp_path: Path) -> str:
    d = tmp_path / "conf.d"
    d.mkdir()
    return str(d)


def test_defaults_match_crio_names_and_values(empty_dir: str, tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path / "c.conf", "")), empty_dir)
    embedded = defaults(discover_declarations()).data
    # the one value decided at load time (tests/unit/config/test_cgroup_manager_default.py)
    assert embedded["runtime"]["cgroup_manager"] == ""
    embedded["runtime"]["cgroup_manager"] = cfg.get("runtime.cgroup_manager")
    assert cfg.data == embedded
    assert cfg.listen == "/run/pycrio/pycrio.sock"
    assert cfg.get("runtime.cgroup_manager") in ("cgroupfs", "systemd")
    assert cfg.get("runtime.default_runtime") == "runc"
    assert cfg.runtimes["runc"]["driver"] == "runc"
    assert cfg.get("network.network_dir") == "/etc/cni/net.d/"


def test_file_overrides_defaults(tmp_path: Path, empty_dir: str) -> None:
    conf = write(
        tmp_path / "c.conf",
        '[runtime]\nlog_level = "debug"\n[api]\nlisten = "/tmp/a.sock"\n',
    )
    cfg = load(str(conf), empty_dir)
    assert cfg.log_level == "debug"
    assert cfg.listen == "/tmp/a.sock"
    assert cfg.root == "/var/lib/pycrio"
    assert cfg.sources[-1] == str(conf)


def test_drop_ins_apply_in_lexical_order(tmp_path: Path) -> None:
    conf = write(tmp_path / "c.conf", '[runtime]\nlog_level = "error"\n')
    d = tmp_path / "d"
    d.mkdir()
    write(d / "20-b.conf", '[runtime]\nlog_level = "warn"\n')
    write(d / "10-a.conf", '[runtime]\nlog_level = "debug"\ncgroup_manager = "systemd"\n')
    write(d / "30-ignored.toml", '[runtime]\nlog_level = "trace"\n')
    cfg = load(str(conf), str(d))
    assert cfg.log_level == "warn"
    assert cfg.get("runtime.cgroup_manager") == "systemd"
    assert cfg.sources[1:] == [str(conf), str(d / "10-a.conf"), str(d / "20-b.conf")]


def test_flags_override_files(tmp_path: Path, empty_dir: str) -> None:
    conf = write(tmp_path / "c.conf", 'root = "/srv/a"\n[runtime]\nlog_level = "error"\n')
    cfg = load(
        str(conf),
        empty_dir,
        {"root": "/srv/b", "log_level": "debug", "listen": None, "cgroup_manager": "systemd"},
    )
    assert cfg.root == "/srv/b"
    assert cfg.log_level == "debug"
    assert cfg.get("runtime.cgroup_manager") == "systemd"
    assert cfg.listen == "/run/pycrio/pycrio.sock"


def test_handler_tables_merge_and_fill_defaults(tmp_path: Path, empty_dir: str) -> None:
    conf = write(
        tmp_path / "c.conf",
        '[runtime.runtimes.crun]\ndriver = "crun"\nruntime_path = "/usr/bin/crun"\n'
        '[runtime.runtimes.runc]\nruntime_root = "/run/runc-x"\n',
    )
    cfg = load(str(conf), empty_dir)
    assert cfg.runtimes["crun"] == {
        "driver": "crun",
        "runtime_type": "oci",
        "runtime_path": "/usr/bin/crun",
        "privileged_without_host_devices": False,
        "runtime_root": "",
        "monitor_path": "",
        "allowed_annotations": [],
        # the crun driver's own options (declared by it)
        "attach_socket_dir": "",
        "runtime_args": [],
        "monitor_log_level": "info",
        "monitor_syslog": False,
        "no_pivot": False,
        "command_timeout": 30,
        "create_timeout": 120,
    }
    assert cfg.runtimes["runc"]["driver"] == "runc"
    assert cfg.runtimes["runc"]["runtime_root"] == "/run/runc-x"


def test_plugin_tables_are_checked_and_completed_from_declarations(
    tmp_path: Path, empty_dir: str
) -> None:
    conf = write(tmp_path / "c.conf", "[plugins.cgroupfs]\nremove_timeout = 2\n")
    cfg = load(str(conf), empty_dir)
    assert cfg.plugin_table("cgroupfs") == {"default_parent": "/pycrio", "remove_timeout": 2}
    assert cfg.plugin_table("cni") == {"timeout": 60.0, "poll_interval": 1.0}
    assert cfg.plugin_table("absent") == {}
    assert "dirs" not in cfg.plugin_table("oci_hooks")  # declared without a default
    assert cfg.get("runtime.hooks_dir") == [
        "/usr/share/containers/oci/hooks.d",
        "/etc/containers/oci/hooks.d",
    ]


def test_handler_tables_take_their_drivers_options(tmp_path: Path, empty_dir: str) -> None:
    conf = write(
        tmp_path / "c.conf",
        "[runtime.runtimes.runc]\nsystemd_cgroup = true\nruntime_args = ['--debug']\n"
        "[runtime.runtimes.crun]\ndriver = 'crun'\ncommand_timeout = 5.5\n",
    )
    cfg = load(str(conf), empty_dir)
    runc, crun = cfg.runtimes["runc"], cfg.runtimes["crun"]
    assert (runc["systemd_cgroup"], runc["runtime_args"], runc["command_timeout"]) == (
        True,
        ["--debug"],
        30,
    )
    assert crun["command_timeout"] == 5.5
    # unset: the runtime driver follows [runtime] cgroup_manager
    assert "systemd_cgroup" not in crun


def test_a_key_of_a_plugin_that_is_not_installed_names_the_plugin(
    tmp_path: Path, empty_dir: str
) -> None:
    conf = write(tmp_path / "c.conf", "[runtime]\nhooks_dir = ['/x']\n")
    bare = Declarations(
        owners={"runc": Owner("runc", ("pycrio.runtime",), "pycrio-runtime-runc", "1")}
    )
    with pytest.raises(
        ConfigError, match="plugin 'oci_hooks', which is not installed; install pycrio-oci-hooks"
    ):
        load(str(conf), empty_dir, declarations=bare)


def test_a_driver_option_in_a_drop_in_is_checked_against_the_merged_driver(
    tmp_path: Path,
) -> None:
    conf = write(tmp_path / "c.conf", "[runtime.runtimes.fast]\ndriver = 'crun'\n")
    drop = tmp_path / "d"
    drop.mkdir()
    write(drop / "50.conf", "[runtime.runtimes.fast]\nno_pivot = true\n")
    assert load(str(conf), str(drop)).runtimes["fast"]["no_pivot"] is True
    write(drop / "60.conf", "[runtime.runtimes.fast]\ndriver = 'kata'\n")
    with pytest.raises(ConfigError, match="'kata' that would declare it is not installed"):
        load(str(conf), str(drop))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("[runtime]\nlog_levle = 'info'\n", "unknown key 'runtime.log_levle'"),
        ("[crio]\nroot = '/x'\n", "unknown key 'crio'"),
        ("[runtime.runtimes.runc]\npath = '/x'\n", "unknown key 'runtime.runtimes.runc.path'"),
        (
            "[api]\ngrpc_max_send_msg_size = '10'\n",
            "'api.grpc_max_send_msg_size' must be an integer, got a string ('10')",
        ),
        ("[network]\nplugin_dirs = '/opt'\n", "'network.plugin_dirs' must be an array of strings"),
        ("[network]\nplugin_dirs = [1]\n", "'network.plugin_dirs' must be an array of strings"),
        ("[api]\ngrpc_workers = true\n", "'api.grpc_workers' must be an integer, got a boolean"),
        ("[runtime]\nlog_level = 'loud'\n", "'runtime.log_level' must be one of trace, debug"),
        ("api = 3\n", "'api' must be a table"),
        (
            "[runtime]\nruntimes = 'runc'\n",
            "'runtime.runtimes' must be a table of runtime handlers",
        ),
        ("plugins = 1\n", "'plugins' must be a table"),
        ("[plugins]\nnri = 1\n", "'plugins.nri' must be a table"),
        ("[plugins.gone]\nx = 1\n", "no plugin or driver of that name is installed"),
        # options declared by plugins and drivers
        (
            "[plugins.gone]\nsocket = '/x'\n",
            "[plugins.gone] configures 'gone', but no plugin or driver of that name is installed",
        ),
        (
            "[plugins.cgroupfs]\ndefault_parnt = '/x'\n",
            "unknown key 'plugins.cgroupfs.default_parnt'; allowed in [plugins.cgroupfs]:"
            " default_parent, remove_timeout",
        ),
        (
            "[plugins.cni]\ntimeout = true\n",
            "'plugins.cni.timeout' must be a number of seconds or a duration string such as"
            ' "90s", got a boolean',
        ),
        (
            "[plugins.cni]\ntimeout = '5 minutes'\n",
            "'plugins.cni.timeout' must be a number of seconds or a duration string",
        ),
        (
            "[runtime.runtimes.runc]\nsystemd_cgroup = 'yes'\n",
            "'runtime.runtimes.runc.systemd_cgroup' must be a boolean",
        ),
        (
            "[runtime.runtimes.kata]\ndriver = 'kata'\nsandbox_cgroup_only = true\n",
            "key 'runtime.runtimes.kata.sandbox_cgroup_only' is not a core handler option, and"
            " the driver 'kata' that would declare it is not installed",
        ),
        ("[runtime]\nhooks_dir = 3\n", "'runtime.hooks_dir' must be a string or array of"),
        ("disabled_plugins = 'oci_hooks'\n", "'disabled_plugins' must be an array of strings"),
    ],
)
def test_bad_keys_and_types_name_file_and_key(
    tmp_path: Path, empty_dir: str, text: str, expected: str
) -> None:
    conf = write(tmp_path / "bad.conf", text)
    with pytest.raises(ConfigError) as err:
        load(str(conf), empty_dir)
    assert str(conf) in str(err.value)
    assert expected in str(err.value)


def test_error_in_drop_in_names_the_drop_in(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write(d / "50-x.conf", "[api]\nlisten = 5\n")
    with pytest.raises(ConfigError, match=r"50-x\.conf: key 'api\.listen' must be a string"):
        load(str(write(tmp_path / "c.conf", "")), str(d))


def test_invalid_toml_names_file(tmp_path: Path, empty_dir: str) -> None:
    conf = write(tmp_path / "c.conf", "[runtime\n")
    with pytest.raises(ConfigError, match=r"c\.conf: not valid TOML"):
        load(str(conf), empty_dir)


def test_explicit_missing_config_is_an_error(tmp_path: Path, empty_dir: str) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "nope.conf"), empty_dir)
    with pytest.raises(ConfigError, match="config directory does not exist"):
        load(str(write(tmp_path / "c.conf", "")), str(tmp_path / "nodir"))


def test_whole_config_checks(tmp_path: Path, empty_dir: str) -> None:
    conf = write(tmp_path / "c.conf", "[runtime]\ndefault_runtime = 'kata'\n")
    with pytest.raises(ConfigError, match="default_runtime is 'kata'.*defines only: runc"):
        load(str(conf), empty_dir)
    conf = write(tmp_path / "c.conf", "root = 'relative/dir'\n")
    with pytest.raises(ConfigError, match="root must be an absolute path"):
        load(str(conf), empty_dir)
    conf = write(tmp_path / "c.conf", "[api]\ngrpc_workers = 0\n")
    with pytest.raises(
        ConfigError, match="c.conf: key 'api.grpc_workers' must be an integer from 1"
    ):
        load(str(conf), empty_dir)


def test_flag_with_bad_value_is_reported_as_command_line(tmp_path: Path, empty_dir: str) -> None:
    with pytest.raises(ConfigError, match="command line: key 'runtime.log_level'"):
        load(str(write(tmp_path / "c.conf", "")), empty_dir, {"log_level": "verbose"})


def test_every_option_has_a_documented_default_of_its_type() -> None:
    data = defaults().data
    text = "\n".join(o.doc for o in OPTIONS)
    assert all(o.doc.strip() for o in OPTIONS), text
    assert tomllib.loads("x = 1")  # sanity of the toml reader used by load
    assert set(data) >= {"root", "runroot", "api", "runtime", "network"}


def test_durations_are_parsed_and_checked(tmp_path: Path, empty_dir: str) -> None:
    from pycrio.config.schema import parse_duration

    assert parse_duration("1m30s") == 90.0
    assert parse_duration("0s") == parse_duration("0") == 0.0
    assert parse_duration("250ms") == 0.25
    conf = write(tmp_path / "c.conf", "[image]\npull_progress_timeout = '2m'\n")
    assert load(str(conf), empty_dir).seconds("image.pull_progress_timeout") == 120.0
    for bad in ("'10'", "'ten seconds'", "10", "'1m x'"):
        conf = write(tmp_path / "c.conf", f"[image]\npull_progress_timeout = {bad}\n")
        with pytest.raises(ConfigError, match="'image.pull_progress_timeout' must be a duration"):
            load(str(conf), empty_dir)


def test_storage_driver_choices(tmp_path: Path, empty_dir: str) -> None:
    conf = write(tmp_path / "c.conf", "storage_driver = 'vfs'\n")
    assert load(str(conf), empty_dir).get("storage_driver") == "vfs"
    conf = write(tmp_path / "c.conf", "storage_driver = 'btrfs'\n")
    with pytest.raises(ConfigError, match="must be one of overlay, vfs"):
        load(str(conf), empty_dir)


def test_runtime_type_vm_selects_the_shim_v2_driver(tmp_path: Path, empty_dir: str) -> None:
    conf = write(
        tmp_path / "c.conf",
        "[runtime.runtimes.kata]\nruntime_type = 'vm'\n"
        "runtime_path = '/usr/bin/containerd-shim-kata-v2'\n"
        "privileged_without_host_devices = true\n"
        "[runtime.runtimes.other]\nruntime_type = 'vm'\ndriver = 'mine'\n",
    )
    cfg = load(str(conf), empty_dir, declarations=Declarations())
    kata = cfg.runtimes["kata"]
    assert (kata["driver"], kata["runtime_type"], kata["privileged_without_host_devices"]) == (
        "vm",
        "vm",
        True,
    )
    assert cfg.runtimes["other"]["driver"] == "mine"  # an explicit driver wins
    assert cfg.runtimes["runc"]["runtime_type"] == "oci"
    assert cfg.runtimes["runc"]["privileged_without_host_devices"] is False
    bad = write(tmp_path / "bad.conf", "[runtime.runtimes.x]\nruntime_type = 'pod'\n")
    with pytest.raises(ConfigError, match="runtime_type"):
        load(str(bad), empty_dir, declarations=Declarations())
