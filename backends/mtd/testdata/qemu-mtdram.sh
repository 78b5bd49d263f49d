#!/bin/bash
# Runs the mtd package's tests against the kernel's mtdram, through
# /dev/mtd0, in a Debian x86-64 kernel booted under qemu (TCG): the amd64
# test binary, then the 386 one (through the kernel's compat ioctls).
#
#   bash backends/mtd/testdata/qemu-mtdram.sh [KERNEL.deb BUSYBOX-STATIC.deb]
#
# The two .deb files default to those integration/qemu/run.sh keeps in
# integration/qemu/.cache/debs (run it once first). Exits with the tests'
# status: 0 when both binaries passed.
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
kdeb=${1:-$(ls "$top"/integration/qemu/.cache/debs/linux-image-*-amd64_*.deb | tail -1)}
bdeb=${2:-$(ls "$top"/integration/qemu/.cache/debs/busybox-static_*.deb | tail -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/k"
dpkg-deb -x "$bdeb" "$work/b"
r=$work/root
mkdir -p "$r/bin" "$r/proc" "$r/sys" "$r/dev" "$r/tmp"
cp "$work/b/bin/busybox" "$r/bin/"
mods=$(echo "$work"/k/lib/modules/*/kernel/drivers/mtd)
cp "$mods/mtd.ko" "$mods/devices/mtdram.ko" "$r/"
(cd "$top" && CGO_ENABLED=0 go test -c -o "$r/mtd-amd64.test" ./backends/mtd &&
	CGO_ENABLED=0 GOARCH=386 go test -c -o "$r/mtd-386.test" ./backends/mtd)
cat > "$r/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "== guest: $(uname -r)"
insmod /mtd.ko && insmod /mtdram.ko total_size=256 erase_size=64
cat /proc/mtd
rc=0
for t in /mtd-amd64.test /mtd-386.test; do
	echo "== $t"
	(cd /tmp && $t -test.v -test.run 'Mtdram|Layout|Ioctl') || rc=1
done
echo "== guest result $rc"
poweroff -f
INIT
chmod +x "$r/init"
(cd "$r" && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")
timeout 600 qemu-system-x86_64 -nographic -no-reboot -m 512 -smp 2 \
	-kernel "$(ls "$work"/k/boot/vmlinuz-*)" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet" | tee "$work/console.log"
grep -q '^== guest result 0' "$work/console.log"
