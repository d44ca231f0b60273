"""Random TOML configuration: refused naming file, key and expected type (issue 17).

Documents are built from the option schema (tests/support/config_fuzz.py):
wrong types, unknown keys, extreme integers, NUL and control characters,
malformed or astronomically long durations, garbage that is not TOML. The
loader must accept a document (and then every value is one the daemon can
use) or refuse it with a ConfigError naming the file; `pycrio config` and the
daemon refuse such files the same way without a traceback; and a running
daemon sent SIGHUP with a broken drop-in keeps its configuration and says why.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import config_fuzz as cf
import pytest
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from pycrio.config.load import INT_RANGES, ConfigError, load
from pycrio.config.schema import DURATION, MAX_DURATION, OPTIONS

pytestmark = [pytest.mark.fuzz]


def _load(tmp: Path, text: str, *, as_dropin: bool) -> tuple[Path, object]:
    main, dropins = tmp / "pycrio.conf", tmp / "pycrio.conf.d"
    dropins.mkdir(parents=True, exist_ok=True)
    for old in dropins.iterdir():
        old.unlink()
    target = dropins / "50-fuzz.conf" if as_dropin else main
    main.write_text("" if as_dropin else text)
    if as_dropin:
        target.write_text(text)
    try:
        return target, load(str(main), str(dropins))
    except ConfigError as e:
        return target, e


@fuzz_settings(300)
@given(
    text=st.one_of(cf.documents().map(cf.render), cf.GARBAGE),
    as_dropin=st.booleans(),
)
def test_the_loader_accepts_usable_values_or_names_the_file(
    tmp_path_factory: pytest.TempPathFactory, text: str, as_dropin: bool
) -> None:
    tmp = tmp_path_factory.mktemp("cfg", numbered=True)
    path, result = _load(tmp, text, as_dropin=as_dropin)
    if isinstance(result, ConfigError):
        message = str(result)
        assert str(path) in message, message
        words = ("must", "unknown key", "not valid TOML", "defines only")
        assert any(w in message for w in words), message
        return
    cfg = result
    for opt in OPTIONS:
        if opt.table.startswith("runtime.runtimes"):
            continue
        if opt.type == DURATION:
            seconds = cfg.seconds(opt.dotted)  # type: ignore[attr-defined]
            assert math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION, (opt.dotted, text)
        bounds = INT_RANGES.get(opt.dotted)
        if bounds is not None:
            value = cfg.get(opt.dotted)  # type: ignore[attr-defined]
            assert bounds[0] <= value <= bounds[1], (opt.dotted, value)


# What the fuzzer found accepted and then failing with a traceback, or refused
# without naming the file: each must now be refused up front, naming both.
FOUND = {
    "grpc-size-over-int32": ("[api]\ngrpc_max_send_msg_size = 9223372036854775807\n",
                             "api.grpc_max_send_msg_size"),
    "metrics-port-99999": ("[metrics]\nmetrics_port = 99999\n", "metrics.metrics_port"),
    "shutdown-timeout-2^63": ("[api]\nshutdown_timeout = 9223372036854775807\n",
                              "api.shutdown_timeout"),
    "sampling-rate-2^63": ("[tracing]\ntracing_sampling_rate_per_million = 9223372036854775807\n",
                           "tracing.tracing_sampling_rate_per_million"),
    "duration-inf": ('[image]\npull_progress_timeout = "' + "9" * 400 + 'h"\n',
                     "image.pull_progress_timeout"),
    "duration-over-go-max": ('[api]\nstream_token_ttl = "99999999999999h"\n',
                             "api.stream_token_ttl"),
    "nul-in-a-host": ('[metrics]\nmetrics_host = "/tmp/\\u0000nul"\n', "metrics.metrics_host"),
    "nul-in-root": ('root = "/tmp/r\\u0000x"\n', "root"),
    "wrong-type": ("[api]\ngrpc_workers = '32'\n", "api.grpc_workers"),
    "unknown-key": ("[image]\npull_timeout = '1m'\n", "image.pull_timeout"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FOUND))
def test_found_bad_values_are_refused_by_the_loader(tmp_path: Path, case: str) -> None:
    text, key = FOUND[case]
    path, result = _load(tmp_path, text, as_dropin=True)
    assert isinstance(result, ConfigError), f"{case} was accepted"
    assert str(path) in str(result) and repr(key) in str(result), result


def _pycrio(tmp: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pycrio", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
    )


@pytest.mark.parametrize("case", ["grpc-size-over-int32", "duration-inf", "nul-in-root"])
def test_pycrio_config_and_the_daemon_refuse_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, key = FOUND[case]
    conf = tmp_path / "pycrio.conf"
    conf.write_text(text)
    (tmp_path / "d").mkdir()
    common = ["--config", str(conf), "--config-dir", str(tmp_path / "d")]
    shown = _pycrio(tmp_path, "config", *common)
    daemon = _pycrio(
        tmp_path, *common, "--listen", str(tmp_path / "s.sock"),
        "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "runroot"),
    )  # fmt: skip
    for run in (shown, daemon):
        assert run.returncode != 0, run
        assert str(conf) in run.stderr and repr(key) in run.stderr, run.stderr
        assert "Traceback" not in run.stderr, run.stderr


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("hup"), [], dict(os.environ))
    d.start()
    yield d
    d.stop()


@pytest.mark.e2e
@fuzz_settings(8)
@given(text=st.one_of(cf.documents().map(cf.render), cf.GARBAGE))
def test_sighup_with_a_broken_dropin_keeps_the_running_config(
    running: DaemonProcess, text: str
) -> None:
    d = running
    broken = d.config_dir / "50-fuzz.conf"
    # a reloadable key the broken file also sets must not take effect
    content = "[runtime]\nlog_level = 'debug'\n" + text
    _, result = _load(d.tmp / "probe", content, as_dropin=True)
    if not isinstance(result, ConfigError):
        return  # not broken after all: nothing to test with it
    broken.write_text(content)
    before = len(d.stderr())
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload" not in d.stderr()[before:] and time.monotonic() < deadline:
        time.sleep(0.05)
    said = d.stderr()[before:]
    broken.unlink()
    assert "configuration reload failed, keeping the running configuration" in said, said
    assert "50-fuzz.conf" in said, said
    assert "reloaded runtime.log_level" not in said, said
    assert d.runtime().Version(api_pb2.VersionRequest(), timeout=10).runtime_name == "pycrio"
