#!/usr/bin/env bash
# Build the node-test VM image: Debian 12 with systemd as init, pycrio's runtime
# Debian packages and a Python venv with pycrio's third-party dependencies.
#
#   build_image.sh DEST WHEELHOUSE PACKAGE...
#
# DEST gets root.img (ext4, the guest's /), vmlinuz and initrd.img. WHEELHOUSE
# holds wheels and requirements.txt for /opt/pycrio-venv. Everything the guest
# needs is installed here, on the host, because the guest has no network.
#
# Safety: systemd is never started on this host. Packages are configured in a
# chroot with a policy-rc.d that refuses every service start (and the chroot
# has no /run/systemd/system, so deb-systemd-invoke does nothing either);
# systemctl is never run here: units are enabled and masked with symlinks.
# systemd runs only when the image boots inside qemu, on its own disk.
set -euo pipefail

dest=$1
wheelhouse=$2
shift 2
mirror=${PYCRIO_VM_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)

[[ $EUID -eq 0 ]] || { echo "build_image.sh: must run as root" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"

remove_build_dir() {
    # debootstrap's second stage mounts /proc (and maybe more) in the chroot:
    # unmount whatever is left, deepest first, before removing anything.
    local dir=$1 m
    while read -r m; do
        umount -l "$m" || true
    done < <(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r)
    rm -rf --one-file-system "$dir"
}
# a build killed before its trap ran (run.py holds a lock: none is running now)
for stale in "$(dirname "$dest")"/.build.*; do
    if [[ -d $stale ]]; then
        remove_build_dir "$stale"
    fi
done

work=$(mktemp -d "$(dirname "$dest")/.build.XXXXXX")
root=$work/root
trap 'remove_build_dir "$work"' EXIT

packages=$(IFS=,; echo "$*")
echo "build_image: debootstrap (first stage) from $mirror"
debootstrap --foreign --variant=minbase --components=main \
    --include="$packages" bookworm "$root" "$mirror"

# No package may start a service on this host while it is configured.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
}

echo "build_image: debootstrap (second stage, in a chroot)"
in_root /debootstrap/debootstrap --second-stage

echo "build_image: python venv with pycrio's dependencies"
mkdir -p "$root/var/cache/pycrio-wheels"
cp -a "$wheelhouse"/. "$root/var/cache/pycrio-wheels/"
in_root python3 -m venv /opt/pycrio-venv
in_root /opt/pycrio-venv/bin/pip install -q --no-index --disable-pip-version-check \
    --find-links /var/cache/pycrio-wheels -r /var/cache/pycrio-wheels/requirements.txt
rm -rf "$root/var/cache/pycrio-wheels"

echo "build_image: configuring the guest"
echo pycrio-node > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 pycrio-node\n::1 localhost\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
: > "$root/etc/resolv.conf"
install -m 0755 "$here/guest/pycrio-node-run" "$root/usr/local/sbin/pycrio-node-run"
install -m 0644 "$here/guest/pycrio-node-run.service" \
    "$root/etc/systemd/system/pycrio-node-run.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/pycrio-node-run.service \
    "$root/etc/systemd/system/multi-user.target.wants/pycrio-node-run.service"
# Services the tests start themselves (registry, containerd's shim is used
# directly) or that only cost time under emulation: masked.
for unit in containerd.service docker-registry.service systemd-tmpfiles-clean.timer \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
    getty@tty1.service serial-getty@ttyS0.service systemd-timesyncd.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$root/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$root/var/lib/apt/lists/"* "$root/debootstrap"

out=$work/out
mkdir -p "$out"
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$out/initrd.img"
echo "build_image: ext4 image from the tree ($(du -sh --one-file-system "$root" | cut -f1))"
truncate -s 4G "$out/root.img"
mkfs.ext4 -q -F -L pycrio-node -d "$root" "$out/root.img"
rm -rf "$dest"
mv "$out" "$dest"
echo "build_image: done: $dest"
