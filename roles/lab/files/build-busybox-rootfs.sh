#!/bin/sh
# Build the root filesystem of the lab image from a static busybox and pack it as a tar
# for `docker import` (no registry is reachable from the lab).
#
#   build-busybox-rootfs.sh BUSYBOX OUTDIR   ->  OUTDIR/rootfs.tar
set -eu
busybox=$1
out=$2
rootfs="$out/rootfs"

"$busybox" true 2>/dev/null || { echo "$busybox is not a working busybox (install busybox-static)" >&2; exit 1; }
rm -rf "$rootfs" "$out/rootfs.tar"
mkdir -p "$rootfs"
cd "$rootfs"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp var/log proc sys dev srv www
chmod 1777 tmp
cp -L "$busybox" bin/busybox
chmod 0755 bin/busybox
# One symlink per applet, relative so that it resolves inside the container.
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "bin/$applet"
done
ln -sf ../../bin/busybox usr/bin/env
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >etc/group
echo 'hosts: files dns' >etc/nsswitch.conf
tar --numeric-owner -C "$rootfs" -cf "$out/rootfs.tar" .
rm -rf "$rootfs"
echo "$out/rootfs.tar"
