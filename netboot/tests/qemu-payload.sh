#!/usr/bin/env bash
# Builds the stand-in payload for the QEMU network-boot test (netboot/tests/it/qemu.rs):
# Debian's cloud kernel and a tiny busybox initramfs whose /init does what Talos does first:
# DHCP, then fetch the URL given as talos.config= on the kernel command line. Everything
# comes from Debian packages (apt-get download); nothing is installed.
# Usage: qemu-payload.sh DEST_DIR   (idempotent: does nothing when DEST_DIR is complete)
set -euo pipefail
dest=${1:?usage: qemu-payload.sh DEST_DIR}
# Bump when the payload changes, so stale caches are rebuilt.
version=2
if [ -s "$dest/vmlinuz" ] && [ -s "$dest/initramfs.gz" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cd "$work"
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$pkg" ] || { echo "qemu-payload: no linux-image-cloud-amd64 in the apt lists (apt-get update?)" >&2; exit 1; }
apt-get download -q "$pkg" busybox-static >/dev/null
dpkg-deb -x linux-image-*.deb kernel
dpkg-deb -x busybox-static_*.deb busybox
mkdir -p root/bin root/lib/modules root/proc root/sys root/dev root/tmp
cp busybox/bin/busybox root/bin/busybox
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    f=$(find kernel/lib/modules -name "$m.ko" | head -n1)
    [ -n "$f" ] || { echo "qemu-payload: module $m not in $pkg" >&2; exit 1; }
    cp "$f" root/lib/modules/
done
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    insmod /lib/modules/$m.ko
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /udhcpc.sh
url=$(sed -n 's/.*talos\.config=\([^ ]*\).*/\1/p' /proc/cmdline)
if wget -q -O /tmp/config "$url"; then
    echo "NETBOOT-CONFIG-FETCHED $(sha256sum /tmp/config | cut -d' ' -f1)"
else
    echo "NETBOOT-CONFIG-FAILED $url"
fi
poweroff -f
INIT
cat > root/udhcpc.sh <<'SCRIPT'
#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"
exit 0
SCRIPT
chmod +x root/init root/udhcpc.sh
(cd root && find . | busybox cpio -o -H newc 2>/dev/null | gzip -9) > initramfs.gz
mkdir -p "$dest"
cp kernel/boot/vmlinuz-* "$dest/vmlinuz.part" && mv "$dest/vmlinuz.part" "$dest/vmlinuz"
cp initramfs.gz "$dest/initramfs.gz.part" && mv "$dest/initramfs.gz.part" "$dest/initramfs.gz"
echo "$version" > "$dest/VERSION"
echo "qemu-payload: $pkg kernel and a busybox initramfs in $dest"
