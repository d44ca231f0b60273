"""Pull throughput: pycrio against `skopeo copy`, side by side, same registry.

Builds a ~200 MB, 5-layer image (mostly incompressible data plus a few
thousand small files), pushes it to Debian's docker-registry on 127.0.0.1,
then runs rounds of

- PullImage through a running pycrio, and
- `skopeo copy docker://... oci:<fresh dir>`,

in every order in turn, and prints the median MB/s of each and their
ratio. Each round pulls an image of its own (same shape, fresh random data),
so every pull fetches and unpacks all of its layers and nothing is deleted
while measuring. `--remove-between` instead pulls one image and removes it
after each round: on a journal-less ext4 (this project's CI VMs) creating
files next to inodes freed moments earlier costs the kernel much more, so
that mode measures the filesystem as much as the pull. skopeo only writes the
compressed blobs; pycrio also decompresses, verifies diff IDs and unpacks,
so a ratio >= 1 means pycrio's whole pull is at least as fast as skopeo's copy.

Every image is signed (a cosign-format sigstore attachment), and each round
also pulls another fresh image of the same shape in a namespace whose policy
requires that signature (sigstoreSigned with the bench's public key; which
of the round's two images is verified alternates): the ratio of the two
pycrio pulls is the cost of verification on a cold pull. The daemon also
logs the time it spent fetching and checking signatures, which the bench
reports as a share of a cold pull: on a busy machine the wall-clock ratio
varies more than the cost it measures.

Usage: .venv/bin/python bench/pull.py [--rounds N] [--layer-mb M]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import registry_env  # noqa: E402
import signing  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from daemon import DaemonProcess  # noqa: E402


def layer_tar(index: int, megabytes: int) -> bytes:
    """One big random file and 500 small ones: both paths of the unpacker."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        big = os.urandom(megabytes * 1024 * 1024)
        info = tarfile.TarInfo(f"layer{index}/big.bin")
        info.size = len(big)
        tar.addfile(info, io.BytesIO(big))
        for i in range(500):
            data = os.urandom(512)
            info = tarfile.TarInfo(f"layer{index}/small/{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--layer-mb", type=int, default=40)
    parser.add_argument(
        "--remove-between",
        action="store_true",
        help="pull one image each round, removing it in between (see the docstring)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pycrio-bench-") as tmp_:
        tmp = Path(tmp_)
        registry = registry_env.RegistryServer(tmp / "registry").start()
        try:
            layout = registry_env.OCILayout(tmp / "layout")
            skopeo = registry_env.Skopeo(tmp / "skopeo")
            signer = signing.SigstoreSigner()

            sizes = []

            def build(repo: str, n: int) -> str:
                layers = [
                    registry_env.compress_layer(layer_tar(i, args.layer_mb), "gzip")
                    for i in range(5)
                ]
                built = layout.build_image(layers, tag=f"{repo}{n}")
                sizes.append(sum(layer.size for layer in layers))
                pushed = registry_env.push(
                    skopeo, layout, f"{repo}{n}", registry, f"bench/{repo}", f"v{n}", built=built
                )
                payload = signing.cosign_payload(pushed.digest, pushed.name)
                signing.push_attachment(
                    skopeo, layout, registry, f"bench/{repo}", pushed.digest,
                    [signing.signed(signer, payload)],
                )  # fmt: skip
                return pushed.name

            count = 1 if args.remove_between else args.rounds
            images = [build("big", n) for n in range(count)]
            others = [build("other", n) for n in range(count)]
            total = sizes[0]  # every image has the same shape
            print(
                f"{len(images) * 2} signed image(s) of 5 layers, {total / 1e6:.1f} MB "
                "compressed each"
            )

            (tmp / "registries.conf").write_text(
                f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
            )
            (tmp / "pycrio").mkdir()
            (tmp / "cosign.pub").write_bytes(signer.public_pem)
            (tmp / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
            (tmp / "policies").mkdir()
            (tmp / "policies" / "signed.json").write_text(
                json.dumps(
                    {"default": [{"type": "sigstoreSigned", "keyPath": str(tmp / "cosign.pub")}]}
                )
            )
            (tmp / "registries.d").mkdir()
            (tmp / "registries.d" / "bench.yaml").write_text(
                "default-docker:\n  use-sigstore-attachments: true\n"
            )
            daemon = DaemonProcess(tmp / "pycrio", [], dict(os.environ))
            daemon.config.write_text(
                f'[image]\nregistries_conf = "{tmp}/registries.conf"\n'
                f'registries_conf_dir = "{tmp}/none"\n'
                f'signature_policy = "{tmp}/policy.json"\n'
                f'signature_policy_dir = "{tmp}/policies"\n'
                f'registries_d = "{tmp}/registries.d"\n'
            )
            daemon.start()
            pycrio_s, verified_s, skopeo_s = [], [], []

            def pycrio_pull(name: str, namespace: str = "") -> None:
                spec = api_pb2.ImageSpec(image=name)
                request = api_pb2.PullImageRequest(image=spec)
                if namespace:
                    request.sandbox_config.metadata.namespace = namespace
                started = time.perf_counter()
                daemon.images().PullImage(request, timeout=600)
                (verified_s if namespace else pycrio_s).append(time.perf_counter() - started)
                if args.remove_between:
                    daemon.images().RemoveImage(api_pb2.RemoveImageRequest(image=spec))

            def skopeo_copy(name: str, dest: Path) -> None:
                started = time.perf_counter()
                subprocess.run(
                    ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                     f"docker://{name}", f"oci:{dest}:v1"],
                    check=True, timeout=600,
                )  # fmt: skip
                skopeo_s.append(time.perf_counter() - started)

            try:
                for round_ in range(args.rounds):
                    which = 0 if args.remove_between else round_
                    name, verified = images[which], others[which]
                    if round_ % 2:  # no image is always the verified one
                        name, verified = verified, name
                    dest = tmp / f"oci-{round_}"
                    steps = [
                        (pycrio_pull, (name,)),
                        (pycrio_pull, (verified, "signed")),
                        (skopeo_copy, (name, dest)),
                    ]
                    # Every order in turn, so each pull follows each other one
                    # equally often; a sync first, so none inherits the last
                    # one's writeback.
                    order = list(itertools.permutations(steps))[round_ % 6]
                    for step, step_args in order:
                        os.sync()
                        step(*step_args)
                    if args.remove_between:
                        subprocess.run(["rm", "-rf", str(dest)], check=True, timeout=120)
            finally:
                log = daemon.stderr()
                daemon.stop()
        finally:
            registry.stop_all()

    mbps = lambda seconds: total / 1e6 / statistics.median(seconds)  # noqa: E731
    print(f"pycrio PullImage: median {statistics.median(pycrio_s):.2f}s  {mbps(pycrio_s):.1f} MB/s")
    print(f"skopeo copy:      median {statistics.median(skopeo_s):.2f}s  {mbps(skopeo_s):.1f} MB/s")
    print(f"ratio pycrio/skopeo throughput: {mbps(pycrio_s) / mbps(skopeo_s):.2f}")
    plain, verified = statistics.median(pycrio_s), statistics.median(verified_s)
    print("  rounds, plain:    " + " ".join(f"{t:.2f}" for t in pycrio_s))
    print("  rounds, verified: " + " ".join(f"{t:.2f}" for t in verified_s))
    print(
        f"pycrio PullImage with a sigstoreSigned policy: median {verified:.2f}s  "
        f"{mbps(verified_s):.1f} MB/s"
    )
    print(
        f"verification cost on a cold pull: {(verified / plain - 1) * 100:+.1f}% of the median "
        "(target <= +10%)"
    )
    # The daemon logs the time spent fetching and checking the signatures of each pull.
    checks = [float(ms) for ms in re.findall(r"accepted by .* in ([0-9.]+) ms", log)]
    if checks:
        spent = statistics.median(checks) / 1000
        print(
            f"signature fetch + verification inside the daemon: median {spent * 1000:.1f} ms "
            f"over {len(checks)} pulls = {spent / plain * 100:.2f}% of a cold pull"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
