#!/bin/bash
# Runs the mtd package's tests against the kernel's mtdram, through
# /dev/mtd0, in a Debian x86-64 kernel booted under qemu (TCG): the amd64
# test binary, then the 386 one (through the kernel's compat ioctls). Then
# a redundant U-Boot environment on two erase blocks of /dev/mtd0, edited
# through nvmemfs's mtd: provider (mounted over FUSE) and by Debian's
# fw_printenv and fw_setenv (libubootenv-tool, copied in with the libraries
# ldd names) reading /dev/mtd0 directly: each reads what the other wrote,
# the kernel's read-only nvmem device of mtd0, mirrored beside, reads the
# same, and a detach during an env set leaves a valid environment. The
# amd64 nvmemfs runs them with env-offset2 given, the 386 one with its
# default (the erase block after copy 1, which `nvmemfs env` learns from
# the server's erase size). libubootenv
# accepts only NOR and NAND MTD devices, so its tools run with
# LD_PRELOAD=fakenor.so, which turns mtdram's MTD_RAM into MTD_NORFLASH in
# MEMGETINFO's answer (see fakenor.c). Needs gcc and libubootenv-tool on
# the host.
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
cp "$(echo "$work"/k/lib/modules/*/kernel/fs/fuse/fuse.ko)" "$r/"
(cd "$top" && CGO_ENABLED=0 go test -c -o "$r/mtd-amd64.test" ./backends/mtd &&
	CGO_ENABLED=0 GOARCH=386 go test -c -o "$r/mtd-386.test" ./backends/mtd &&
	mkdir -p "$r/opt/amd64" "$r/opt/386" &&
	CGO_ENABLED=0 go build -o "$r/opt/amd64/nvmemfs" . &&
	CGO_ENABLED=0 GOARCH=386 go build -o "$r/opt/386/nvmemfs" .)
# fw_printenv and fw_setenv are dynamically linked: each with the
# libraries ldd names, and the loader, at the same paths in the guest.
for f in /usr/bin/fw_printenv /usr/bin/fw_setenv; do
	cp "$f" "$r/bin/"
	for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
done
gcc -shared -fPIC -O2 -Wall -o "$r/fakenor.so" "$top/backends/mtd/testdata/fakenor.c" -ldl
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

# A redundant U-Boot environment on /dev/mtd0 (256 KiB, 64 KiB erase
# blocks): copies of 8 KiB at 0x10000 and at $off2 (0x30000 given as
# env-offset2, or 0x20000 by default: the erase block after copy 1), each
# on an erase block of its own. The same geometry for both tools.
fw() { LD_PRELOAD=/fakenor.so "$@" -c /tmp/fw_env.config; }
check() { # check WHAT: nvmemfs env and fw_printenv on /dev/mtd0 agree
	a=$(nvmemfs env env | sort); b=$(fw fw_printenv | sort)
	if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "ok: $1: both read: $(echo "$a" | cut -c 1-32 | tr '\n' ' ')"
	else echo "FAIL: $1: nvmemfs env: [$a], fw_printenv: [$b]"; rc=1; fi
}
flags() { echo $(od -A n -t u1 -j $((0x10004)) -N 1 /dev/mtd0) $(od -A n -t u1 -j $((off2 + 4)) -N 1 /dev/mtd0); }
boolean() { # boolean WHAT: one copy ACTIVE (1), the other OBSOLETE (0)
	case "$(flags)" in "1 0"|"0 1") echo "ok: $1: flags (copy 1, copy 2) $(flags)" ;;
	*) echo "FAIL: $1: flags (copy 1, copy 2) $(flags), want 1 and 0"; rc=1 ;; esac
}
insmod /fuse.ko 2>/dev/null
mkdir -p /nvmem
# env_checks LABEL OFF2 OPTION: the checks, with /opt/LABEL/nvmemfs as
# nvmemfs, copy 2 at OFF2, and OPTION (env-offset2=OFF2, or nothing for
# the default) in the SPEC. Each starts from blank flash.
env_checks() {
	PATH=/opt/$1:/bin
	off2=$2
	env="layout=u-boot-env-redundant,env-size=0x2000,env-offset=0x10000"
	spec="mtd:0,name=env,$env${3:+,$3}"
	printf '/dev/mtd0 0x10000 0x2000 0x10000\n/dev/mtd0 %#x 0x2000 0x10000\n' $off2 > /tmp/fw_env.config
	echo "== env ($1 nvmemfs, $spec): the mtd: provider over FUSE, and fw_printenv/fw_setenv on /dev/mtd0"
	cat /tmp/fw_env.config
	flash_erase_all
	if ! nvmemfs mount --log /tmp/nvmemfs-$1.log --device "$spec" /nvmem; then
		echo "FAIL: nvmemfs mount --device $spec"; rc=1
		cat /tmp/nvmemfs-$1.log
		return
	fi
	nvmemfs ls
	# Why fakenor.so: without it libubootenv refuses mtdram (MTD_RAM).
	if out=$(fw_printenv -c /tmp/fw_env.config 2>&1); then echo "note: fw_printenv reads mtdram as it is: $out"
	else echo "ok: fw_printenv without fakenor.so refuses mtdram: $out"; fi
	nvmemfs env env >/dev/null 2>&1 && { echo "FAIL: an environment on blank flash"; rc=1; }
	nvmemfs env --force env set board demo && echo "ok: nvmemfs env --force set board demo on blank flash"
	nvmemfs env env set serial# SN-0042
	check "after nvmemfs env set"
	boolean "nvmemfs env set"
	fw fw_setenv bootcmd "run distro_bootcmd" || { echo "FAIL: fw_setenv"; rc=1; }
	check "after fw_setenv on /dev/mtd0"
	boolean "fw_setenv"
	[ "$(nvmemfs env env | grep '^bootcmd=')" = "bootcmd=run distro_bootcmd" ] && echo "ok: nvmemfs reads fw_setenv's bootcmd" || { echo "FAIL: bootcmd"; rc=1; }
	nvmemfs env env set serial# SN-0043
	check "after nvmemfs env set over fw_setenv's copy"
	boolean "nvmemfs env set again"
	# The kernel's own read-only nvmem device of the same MTD device,
	# mirrored beside mtd:, with the same environment layout.
	if [ -e /sys/bus/nvmem/devices/mtd0/nvmem ]; then
		if out=$(nvmemfs attach "sysfs:mtd0,name=mirror,$env,env-offset2=$off2" 2>&1); then
			cmp /nvmem/mirror/nvmem /dev/mtd0 && echo "ok: the kernel's mirror sysfs:mtd0 reads as /dev/mtd0" || { echo "FAIL: mirror differs"; rc=1; }
			ls -l /nvmem/mirror/nvmem /nvmem/env/nvmem
			[ "$(nvmemfs env mirror)" = "$(nvmemfs env env)" ] && echo "ok: the mirror's environment is mtd:'s" || { echo "FAIL: mirror env"; rc=1; }
			if printf x | dd of=/nvmem/mirror/nvmem conv=notrunc 2>/dev/null; then echo "FAIL: the mirror took a write"; rc=1; else echo "ok: the mirror refuses writes"; fi
			nvmemfs env env set serial# SN-0044
			[ "$(nvmemfs env mirror | grep serial)" = "serial#=SN-0044" ] && echo "ok: an env set through mtd: shows in the kernel's mirror" || { echo "FAIL: mirror after env set"; rc=1; }
			ls /nvmem/mirror/cells | head -3
			nvmemfs detach mirror
		else
			echo "FAIL: attach sysfs:mtd0: $out"; rc=1
		fi
	else
		echo "note: the kernel shows no nvmem device for mtd0"
	fi
	# A detach during an env set: the set fails or completes; either way
	# the flash holds a valid environment, the old or the new. The delays
	# straddle the time an env set takes here, so that some detaches land
	# before it, some during, some after.
	big=$(head -c 3000 /dev/zero | tr '\0' x)
	for delay in 0 2000 4000 5000 6000 7000 8000 9000 10000 12000 15000 20000 40000; do
		before=$(fw fw_printenv | sort)
		nvmemfs env env set big "$big$delay" >/tmp/set.out 2>&1 & pid=$!
		usleep $delay
		nvmemfs detach env >/dev/null 2>&1
		wait $pid; set_rc=$?
		after=$(fw fw_printenv 2>&1 | sort)
		if echo "$after" | grep -q "^big=$big$delay\$"; then what=new; elif [ "$after" = "$before" ]; then what=old; else what=neither; fi
		echo "detach after ${delay}us: env set exit $set_rc ($(head -c 100 /tmp/set.out | tr '\n' ' ')), fw_printenv reads the $what environment"
		[ "$what" = neither ] && { echo "FAIL: detach during env set left: $after"; rc=1; }
		[ "$set_rc" = 0 ] && [ "$what" != new ] && { echo "FAIL: env set succeeded but the old environment is there"; rc=1; }
		nvmemfs attach "$spec" >/dev/null || { echo "FAIL: attach again"; rc=1; }
		check "after the detach at ${delay}us and attach"
	done
	nvmemfs unmount /nvmem
	PATH=/bin
}
# flash_erase_all: blank flash, as mtdram starts (busybox has no
# flash_erase; erasing by hand is what fw_setenv's tools do per sector).
flash_erase_all() { dd if=/dev/zero bs=65536 count=4 2>/dev/null | tr '\0' '\377' | dd of=/dev/mtd0 bs=65536 2>/dev/null; }
env_checks amd64 0x30000 env-offset2=0x30000
env_checks 386 0x20000 ""
echo "== guest result $rc"
poweroff -f
INIT
chmod +x "$r/init"
(cd "$r" && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")
timeout 600 qemu-system-x86_64 -nographic -no-reboot -m 512 -smp 2 \
	-kernel "$(ls "$work"/k/boot/vmlinuz-*)" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet" | tee "$work/console.log"
grep -q '^== guest result 0' "$work/console.log"
