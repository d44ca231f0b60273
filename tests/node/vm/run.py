"""Run the node test tier in a Debian 12 VM with systemd as init and cgroup v2 only.

Why a VM: the node tests need systemd as PID 1 and a pure cgroup v2 machine,
which the CI host is not, and systemd must never be started on the host's
own filesystem (its boot-time tmpfiles cleaning empties /tmp and /var/tmp).
The guest boots from its own disk image under qemu and sees nothing of the
host but one throwaway directory (9p tag ``pycrio_run``) holding a copy of
the project, wheels of its distributions and the script to run; it has no
network device at all.

Steps: build the image unless the cache has one for the same inputs
(build_image.sh, the guest files, the Debian packages, the Python
requirements), copy the project, build its wheels, boot the guest with the
disk in snapshot mode (the cached image is never written), stream the
guest's test output, power off, and fail when a test failed or skipped (a
skip inside the VM means the tier did not test what it is for).

Usage (as root, from the project root, with the project's venv):
    .venv/bin/python tests/node/vm/run.py [--timeout S] [--keep] [--build-only] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
CACHE = Path(os.environ.get("PYCRIO_VM_CACHE", "/var/cache/pycrio-vm"))
QEMU = "qemu-system-x86_64"
BIOS = "/usr/share/seabios/bios-256k.bin"

#: What the guest runs. Every test here must pass, none may skip: these are
#: the tests that skip on the CI host for lack of systemd or cgroup v2.
NODE_TESTS = [
    "tests/node",
    "plugins/cgroup_systemd/tests",
    "plugins/cgroup_fs/tests/test_cgroupfs_driver.py::test_v2_pod_cgroup_real",
    "plugins/runtime_crun/tests/test_crun_driver_real.py",
]

#: Debian packages the guest gets on top of the Makefile's DEB_PACKAGES.
GUEST_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "linux-image-amd64",
    "kmod",
    "udev",
    "procps",
    "python3-venv",
]

KERNEL_ARGS = (
    "root=/dev/vda rw console=ttyS0,115200 panic=-1 quiet loglevel=4"
    " systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all systemd.show_status=error"
    " random.trust_cpu=on mitigations=off"
)


def log(message: str) -> None:
    print(f"node-vm: {message}", flush=True)


def cannot_run() -> str:
    """Why this host cannot run the tier, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, qemu with 9p)"
    for tool in (QEMU, "debootstrap", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make install installs it)"
    if not os.path.exists(BIOS):
        return f"{BIOS} is missing (Debian package seabios)"
    return ""


def requirements() -> str:
    """The project's third-party Python dependencies, pinned as the host venv has them."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    keep = [line for line in out.splitlines() if line and not line.startswith(("-e ", "#"))]
    keep = [line for line in keep if not line.lower().startswith("pycrio")]
    return "\n".join(sorted(keep, key=str.lower)) + "\n"


def image_key(packages: list[str], reqs: str) -> str:
    h = hashlib.sha256()
    for path in sorted([HERE / "build_image.sh", *(HERE / "guest").iterdir()]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update("\n".join(sorted(packages)).encode() + b"\0" + reqs.encode())
    return h.hexdigest()[:16]


def ensure_image(packages: list[str]) -> Path:
    """The cached image for these inputs; built (cold: ~10-20 min) when missing."""
    reqs = requirements()
    image = CACHE / f"debian12-{image_key(packages, reqs)}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (image / "root.img").exists():
            log(f"image {image} (cached)")
            return image
        started = time.monotonic()
        log(f"building {image} (cold)")
        with tempfile.TemporaryDirectory(prefix=".wheels-", dir=CACHE) as wheelhouse:
            (Path(wheelhouse) / "requirements.txt").write_text(reqs)
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "-w", wheelhouse, "-r"]
                + [str(Path(wheelhouse) / "requirements.txt")],
                check=True,
                timeout=1200,
            )
            build = ["bash", str(HERE / "build_image.sh"), str(image), wheelhouse, *packages]
            if subprocess.run(build, timeout=2400).returncode != 0:
                # a mirror hiccup should not fail CI: one more try from scratch
                log("image build failed; retrying once")
                subprocess.run(build, check=True, timeout=2400)
        for old in CACHE.glob("debian12-*"):
            if old != image:
                shutil.rmtree(old, ignore_errors=True)
        for probe in CACHE.glob("kvm-probe-*"):
            if not probe.name.endswith(image.name):
                probe.unlink()
        log(f"image built in {time.monotonic() - started:.0f}s")
        return image


def debian_packages() -> list[str]:
    """The Makefile's DEB_PACKAGES plus what a systemd guest needs."""
    # Run from `make test`, this is a sub-make of a sub-make: without
    # --no-print-directory and the parent's MAKEFLAGS/MAKELEVEL, make adds
    # "make[2]: Entering directory ..." lines to what it prints.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(PROJECT), "print-deb-packages"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    ).stdout.split()
    return sorted(set(out) | set(GUEST_PACKAGES))


def copy_project(dest: Path) -> None:
    """Copy the project's files (tracked and untracked, not ignored) for the guest."""
    files = subprocess.run(
        ["git", "-C", str(PROJECT), "ls-files", "-z", "-co", "--exclude-standard"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        src = PROJECT / os.fsdecode(name)
        if not src.is_file():
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def build_wheels(src: Path, dest: Path) -> None:
    projects = [src] + sorted(p.parent for p in src.glob("plugins/*/pyproject.toml"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dest), *map(str, projects)],
        timeout=600,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:  # setuptools' warnings only matter when the build failed
        sys.stderr.write(built.stdout + built.stderr)
        built.check_returncode()


def run_script(pytest_args: list[str]) -> str:
    tests = " ".join(pytest_args or NODE_TESTS)
    return f"""set -eu
cd /mnt/pycrio
export PYTHONDONTWRITEBYTECODE=1 PYCRIO_NODE_VM=1
echo "guest: kernel $(uname -r), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup)," \
    "PID 1 is $(cat /proc/1/comm)"
/opt/pycrio-venv/bin/pip install -q --no-deps --no-index --disable-pip-version-check wheels/*.whl
mkdir -p /etc/cni/net.d
install -m 0644 src/contrib/cni/10-pycrio-bridge.conflist /etc/cni/net.d/
cd src
# emulated (TCG) CPUs are several times slower: a generous per-test timeout
exec /opt/pycrio-venv/bin/python -m pytest -q -rs --basetemp=/var/tmp/pt-node \\
    -o timeout=600 --junitxml=/mnt/pycrio/junit.xml {tests}
"""


def kvm_works(image: Path) -> bool:
    """Whether a KVM guest boots here: the kernel must reach its root-mount panic quickly.

    On some hosts (nested virtualisation) /dev/kvm exists but guests abort
    (``-cpu host``: an unsupported MSR) or hang before printing a line, so it
    is tried once per host kernel and image, for 20 s at most, and the answer
    is cached; TCG is the fallback.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    marker = CACHE / f"kvm-probe-{os.uname().release}-{image.name}"
    if marker.exists():
        return marker.read_text().strip() == "yes"
    argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
            "-display", "none", "-no-reboot", "-nic", "none", "-serial", "stdio",
            "-kernel", str(image / "vmlinuz"),
            "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]  # fmt: skip
    try:
        out = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
        works = b"Kernel panic" in out.stdout or b"VFS: Unable to mount root" in out.stdout
    except subprocess.TimeoutExpired:
        works = False
    marker.write_text("yes\n" if works else "no\n")
    log(f"KVM probe: guests {'boot' if works else 'do not boot'} with KVM here")
    return works


def qemu_argv(image: Path, rundir: Path) -> list[str]:
    accel = os.environ.get("PYCRIO_VM_ACCEL") or ("kvm" if kvm_works(image) else "tcg")
    return [
        QEMU,
        "-accel",
        accel,
        "-cpu",
        "max" if accel == "tcg" else "host",
        "-smp",
        os.environ.get("PYCRIO_VM_CPUS", "2"),
        "-m",
        os.environ.get("PYCRIO_VM_MEMORY", "2048"),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-kernel",
        str(image / "vmlinuz"),
        "-initrd",
        str(image / "initrd.img"),
        "-append",
        KERNEL_ARGS,
        "-drive",
        f"file={image / 'root.img'},format=raw,if=virtio,snapshot=on,cache=unsafe",
        "-virtfs",
        f"local,path={rundir},mount_tag=pycrio_run,security_model=none,id=run",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{rundir / 'console.log'}",
    ]


def boot(image: Path, rundir: Path, timeout: float) -> int:
    """Boot the guest and wait for it to power off; stream its test output."""
    argv = qemu_argv(image, rundir)
    log("booting: " + " ".join(argv))
    env = dict(os.environ, TMPDIR=str(rundir))  # the snapshot overlay lives there
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)  # noqa: S603
    output = rundir / "output.log"
    offset = 0
    try:
        while True:
            try:
                rc = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None
            if output.exists():
                with open(output, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            if rc is not None:
                break
            if time.monotonic() - started > timeout:
                log(f"the guest did not finish within {timeout:.0f}s; killing qemu")
                return 124
        log(f"guest powered off after {time.monotonic() - started:.0f}s (qemu exit {rc})")
        return rc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def skipped_tests(junit: Path) -> list[str]:
    tree = ET.parse(junit)
    out = []
    for case in tree.iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            name = f"{case.get('classname')}::{case.get('name')}"
            out.append(f"{name}: {skip.get('message', '')}")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds for the guest run")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--build-only", action="store_true", help="only build the image")
    parser.add_argument("pytest_args", nargs="*", help="tests to run in the guest")
    args = parser.parse_args(argv)
    reason = cannot_run()
    if reason:
        log(f"SKIPPED: the node tier cannot run on this host: {reason}")
        return 0
    image = ensure_image(debian_packages())
    if args.build_only:
        return 0
    rundir = Path(tempfile.mkdtemp(prefix="pycrio-node-"))
    try:
        copy_project(rundir / "src")
        build_wheels(rundir / "src", rundir / "wheels")
        (rundir / "run.sh").write_text(run_script(args.pytest_args))
        qemu_rc = boot(image, rundir, args.timeout)
        rc_file = rundir / "rc"
        if not rc_file.exists():
            log(f"the guest left no result (qemu exit {qemu_rc}); end of its console:")
            console = rundir / "console.log"
            if console.exists():
                print(console.read_text(errors="replace")[-6000:])
            return 1
        rc = int(rc_file.read_text().strip() or "1")
        junit = rundir / "junit.xml"
        if rc == 0 and junit.exists() and not args.pytest_args:
            skipped = skipped_tests(junit)
            if skipped:
                log("tests skipped inside the VM, where they must run:")
                for line in skipped:
                    print("  " + line)
                return 1
        log(f"guest tests exit {rc}")
        return rc
    finally:
        if args.keep:
            log(f"run directory kept: {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
