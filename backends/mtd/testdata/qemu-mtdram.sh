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
# MEMGETINFO's answer (see fakenor.c). Then block: on loop devices (the
# kernel's loop.ko, busybox losetup), with the amd64 nvmemfs: dd and cmp
# through the mount, unaligned writes, the kernel's write protection of a
# loop device (its ro flag, from losetup -r or blockdev --setro, in
# /sys/block/loopN/ro; loop devices have no eMMC force_ro), and a
# redundant environment at an offset of /dev/loop0 shared with fw_printenv
# and fw_setenv. Needs gcc and libubootenv-tool on the host.
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
# loop.ko, unless this kernel has loop built in.
loop=$(echo "$work"/k/lib/modules/*/kernel/drivers/block/loop.ko)
if [ -f "$loop" ]; then cp "$loop" "$r/"; fi
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
# shared_block_check: a redundant environment whose copies share an erase
# block (0x0 and 0x2000 of one 64 KiB block: where a save of one copy
# erases the other), on mtd: attached with no environment in its SPEC.
# nvmemfs env finds it by its CRC and reads it, but refuses to write it,
# with the reason, and the flash keeps every byte.
shared_block_check() {
	PATH=/opt/amd64:/bin
	echo "== env found by its CRC, copies sharing an erase block, on mtd: (amd64 nvmemfs)"
	flash_erase_all
	head -c 16384 /dev/zero | tr '\0' '\377' > /tmp/shared.img
	# Two saves, so that both copies are valid.
	nvmemfs env --redundant --env-size 0x2000 --force /tmp/shared.img set board old >/dev/null &&
		nvmemfs env --redundant --env-size 0x2000 /tmp/shared.img set board shared >/dev/null &&
		dd if=/tmp/shared.img of=/dev/mtd0 conv=notrunc 2>/dev/null || { fail "an environment image for /dev/mtd0"; return; }
	dd if=/dev/mtd0 of=/tmp/mtd-before 2>/dev/null
	if ! nvmemfs mount --log /tmp/nvmemfs-shared.log --device mtd:0,name=raw /nvmem; then
		fail "nvmemfs mount --device mtd:0,name=raw"; cat /tmp/nvmemfs-shared.log; return
	fi
	[ "$(nvmemfs env raw)" = "board=shared" ] && ok "nvmemfs env reads the environment it found by its CRC" || fail "env raw: $(nvmemfs env raw 2>&1)"
	refused "nvmemfs env set on copies sharing an erase block" "not on an erase-block boundary" nvmemfs env raw set board other
	dd if=/dev/mtd0 of=/tmp/mtd-after 2>/dev/null
	same "the flash after the refused env set" /tmp/mtd-before /tmp/mtd-after
	nvmemfs unmount /nvmem
	# Where U-Boot keeps them on NOR: copy 2 in the next erase block
	# (0x10000), the active one after three saves. The content alone does
	# not say where copy 2 is; the erase size from mtd: does, and env
	# reads that copy, writes, and fw_printenv (0x0 and 0x10000 in its
	# config) agrees.
	echo "== env found by its CRC, copies on erase blocks of their own, on mtd: (amd64 nvmemfs)"
	flash_erase_all
	head -c 131072 /dev/zero | tr '\0' '\377' > /tmp/apart.img
	nvmemfs env --redundant --env-size 0x2000 --env-offset2 0x10000 --env-flags boolean --force /tmp/apart.img set board old >/dev/null &&
		nvmemfs env --redundant --env-size 0x2000 --env-offset2 0x10000 --env-flags boolean /tmp/apart.img set board new >/dev/null &&
		nvmemfs env --redundant --env-size 0x2000 --env-offset2 0x10000 --env-flags boolean /tmp/apart.img set board newer >/dev/null &&
		dd if=/tmp/apart.img of=/dev/mtd0 conv=notrunc 2>/dev/null || { fail "an environment image with copies apart"; return; }
	if ! nvmemfs mount --log /tmp/nvmemfs-apart.log --device mtd:0,name=raw /nvmem; then
		fail "nvmemfs mount --device mtd:0,name=raw"; cat /tmp/nvmemfs-apart.log; return
	fi
	[ "$(nvmemfs env raw)" = "board=newer" ] && ok "nvmemfs env reads the newer copy, in the next erase block" || fail "env raw: $(nvmemfs env raw 2>&1), want board=newer"
	nvmemfs env raw set board third >/dev/null && ok "nvmemfs env set on copies apart" || fail "env set on copies apart"
	printf '/dev/mtd0 0x0 0x2000 0x10000\n/dev/mtd0 0x10000 0x2000 0x10000\n' > /tmp/fw_env.config
	[ "$(fw fw_printenv)" = "board=third" ] && ok "fw_printenv reads nvmemfs's set" || fail "fw_printenv: $(fw fw_printenv 2>&1), want board=third"
	# layout=auto finds the same copy for its cells.
	if nvmemfs attach "mtd:0,name=auto,layout=auto,ro" >/dev/null; then
		[ "$(cat /nvmem/auto/cells/board@* 2>&1)" = "third" ] && ok "layout=auto's cell reads the active copy" || fail "layout=auto's cell: $(ls /nvmem/auto/cells 2>&1) $(cat /nvmem/auto/cells/board@* 2>&1), want third"
	else
		fail "nvmemfs attach mtd:0,name=auto,layout=auto,ro"
	fi
	nvmemfs unmount /nvmem
	# Only copy 1 ever written (a factory image): where copy 2 goes cannot
	# be told. env reads, refuses to write without --env-offset2, and
	# writes with it.
	echo "== env found by its CRC, copy 2 never written, on mtd: (amd64 nvmemfs)"
	flash_erase_all
	head -c 8192 /tmp/apart.img > /tmp/one.img
	dd if=/tmp/one.img of=/dev/mtd0 conv=notrunc 2>/dev/null
	dd if=/dev/mtd0 of=/tmp/mtd-before 2>/dev/null
	if ! nvmemfs mount --log /tmp/nvmemfs-one.log --device mtd:0,name=raw /nvmem; then
		fail "nvmemfs mount --device mtd:0,name=raw"; cat /tmp/nvmemfs-one.log; return
	fi
	[ -n "$(nvmemfs env raw)" ] && ok "nvmemfs env reads copy 1: $(nvmemfs env raw)" || fail "env raw: $(nvmemfs env raw 2>&1)"
	refused "nvmemfs env set, copy 2 never written" "no good second copy" nvmemfs env raw set board fourth
	dd if=/dev/mtd0 of=/tmp/mtd-after 2>/dev/null
	same "the flash after the refused env set" /tmp/mtd-before /tmp/mtd-after
	nvmemfs env --redundant --env-size 0x2000 --env-offset2 0x10000 raw set board fourth >/dev/null && ok "env set with --env-offset2" || fail "env set with --env-offset2"
	[ "$(fw fw_printenv)" = "board=fourth" ] && ok "fw_printenv reads it" || fail "fw_printenv: $(fw fw_printenv 2>&1), want board=fourth"
	nvmemfs unmount /nvmem
}
# block: on a loop device (loop.ko when the kernel has loop as a module),
# with the amd64 nvmemfs: dd and cmp through the mount against the device
# and the image behind it, unaligned writes, EFBIG at the end, the kernel's
# read-only flag (a loop device has no eMMC force_ro: its protection is
# the disk's ro, set by losetup -r or blockdev --setro, and shown in
# /sys/block/loopN/ro), a redundant U-Boot environment at an offset shared
# with fw_printenv and fw_setenv on /dev/loop0, and the detach.
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; rc=1; }
# same WHAT A B: ok when the files are equal.
same() { if cmp "$2" "$3"; then ok "$1"; else fail "$1"; fi; }
# refused WHAT ERRNO-TEXT CMD...: CMD must fail, saying ERRNO-TEXT.
refused() {
	what=$1 want=$2; shift 2
	if out=$("$@" 2>&1); then fail "$what: succeeded, want $want"
	elif echo "$out" | grep -q "$want"; then ok "$what: $want ($(echo "$out" | head -1))"
	else fail "$what: $out, want $want"; fi
}
block_checks() {
	PATH=/opt/amd64:/bin
	echo "== block: on a loop device (amd64 nvmemfs, busybox losetup)"
	t0=$(cut -d ' ' -f 1 /proc/uptime)
	[ -f /loop.ko ] && insmod /loop.ko
	[ -e /dev/loop1 ] || { fail "no loop devices (loop.ko: $(ls /loop.ko 2>&1))"; return; }
	head -c 1048576 /dev/urandom > /tmp/blk.img
	cp /tmp/blk.img /tmp/want # what /dev/loop0 must hold
	losetup /dev/loop0 /tmp/blk.img || { fail "losetup /dev/loop0"; return; }
	[ "$(cat /sys/block/loop0/ro)" = 0 ] && ok "/sys/block/loop0/ro is 0 after losetup" || fail "/sys/block/loop0/ro: $(cat /sys/block/loop0/ro)"
	if ! nvmemfs mount --log /tmp/nvmemfs-block.log --device block:/dev/loop0,name=blk /nvmem; then
		fail "nvmemfs mount --device block:/dev/loop0"; cat /tmp/nvmemfs-block.log; return
	fi
	nvmemfs ls
	nvm=/nvmem/blk/nvmem
	[ "$(stat -c '%s %a' $nvm)" = "1048576 644" ] && ok "block:/dev/loop0: 1 MiB, mode 0644" || fail "block:/dev/loop0: $(stat -c '%s %a' $nvm)"
	same "block:/dev/loop0 reads as /dev/loop0 (cmp)" $nvm /dev/loop0

	# dd through the mount: 64 KiB on whole sectors, then writes that
	# start and end inside sectors (read-modify-write of O_DIRECT blocks).
	# Each goes to /tmp/want too; the device and the image behind the loop
	# must then hold exactly that.
	head -c 65536 /dev/urandom > /tmp/w
	ddw() { dd if=/tmp/w of="$1" bs=$2 seek=$3 count=$4 conv=notrunc 2>/dev/null; }
	ddw $nvm 4096 16 16 && ddw /tmp/want 4096 16 16 || fail "dd of 64 KiB at 64 KiB"
	same "dd of 64 KiB through the mount: /dev/loop0 holds it" /dev/loop0 /tmp/want
	for w in "1 1001 7" "777 3 5" "1000 1 70" "1 1048575 1"; do
		set -- $w
		ddw $nvm $1 $2 $3 && ddw /tmp/want $1 $2 $3 || fail "dd bs=$1 seek=$2 count=$3"
	done
	same "unaligned dd writes (7 bytes at 1001, 5x777 at 2331, 70x1000 at 1000, the last byte): /dev/loop0 holds them, nothing else changed" /dev/loop0 /tmp/want
	same "the image behind the loop holds them too" /tmp/blk.img /tmp/want
	dd if=$nvm of=/tmp/r1 bs=3333 skip=7 count=11 2>/dev/null
	dd if=/tmp/want of=/tmp/r2 bs=3333 skip=7 count=11 2>/dev/null
	same "dd read at an unaligned offset (bs=3333 skip=7)" /tmp/r1 /tmp/r2
	refused "a write at the end" "File too large" dd if=/tmp/w of=$nvm bs=1 seek=1048576 count=1 conv=notrunc
	same "nothing changed after the refused write" /dev/loop0 /tmp/want

	# The kernel's write protection after the attach: blockdev --setro sets
	# the disk's ro flag; nvmemfs's writes fail with EPERM (the kernel's
	# answer) until --setrw.
	blockdev --setro /dev/loop0
	[ "$(cat /sys/block/loop0/ro)" = 1 ] && ok "/sys/block/loop0/ro is 1 after blockdev --setro" || fail "/sys/block/loop0/ro after --setro: $(cat /sys/block/loop0/ro)"
	refused "a write while /dev/loop0 is read-only" "Operation not permitted" dd if=/tmp/w of=$nvm bs=512 seek=10 count=1 conv=notrunc
	same "nothing changed while read-only" /dev/loop0 /tmp/want
	blockdev --setrw /dev/loop0
	ddw $nvm 512 10 1 && ddw /tmp/want 512 10 1 || fail "dd after blockdev --setrw"
	same "a write after blockdev --setrw lands" /dev/loop0 /tmp/want

	# A loop device set up read-only: /sys/block/loop1/ro is 1, and
	# nvmemfs serves it read-only (mode 0444, open for writing EACCES).
	head -c 65536 /dev/urandom > /tmp/ro.img
	losetup -r /dev/loop1 /tmp/ro.img || fail "losetup -r /dev/loop1"
	[ "$(cat /sys/block/loop1/ro)" = 1 ] && ok "/sys/block/loop1/ro is 1 after losetup -r" || fail "/sys/block/loop1/ro: $(cat /sys/block/loop1/ro)"
	if nvmemfs attach block:/dev/loop1,name=ro; then
		nvmemfs ls | grep '^ro '
		[ "$(stat -c %a /nvmem/ro/nvmem)" = 444 ] && ok "nvmemfs serves the read-only loop with mode 0444" || fail "mode of ro: $(stat -c %a /nvmem/ro/nvmem)"
		nvmemfs ls --json | tr -d ' \n' | grep -q '"name":"ro","type":"[^"]*","size":65536,"mode":"0444"' && ok "nvmemfs ls --json: mode 0444" || fail "nvmemfs ls --json: $(nvmemfs ls --json)"
		refused "open for writing of the read-only loop" "Permission denied" dd if=/tmp/w of=/nvmem/ro/nvmem bs=1 count=1 conv=notrunc
		same "the read-only loop reads as its image, unchanged" /nvmem/ro/nvmem /tmp/ro.img
		grep -q "served read-only.*loop1" /tmp/nvmemfs-block.log && ok "the server log says why: $(grep -o 'served read-only.*' /tmp/nvmemfs-block.log | head -c 120)" || fail "no read-only line in the log: $(cat /tmp/nvmemfs-block.log)"
		nvmemfs detach ro || fail "detach ro"
	else
		fail "attach block:/dev/loop1"
	fi
	losetup -d /dev/loop1 || fail "losetup -d /dev/loop1"

	# A redundant U-Boot environment in the middle of /dev/loop0: two 8 KiB
	# copies at 0x80000 and 0x82000, the same for both tools. The bytes
	# there are random: no valid copy, so the first set needs --force.
	nvmemfs detach blk || fail "detach blk"
	printf '/dev/loop0 0x80000 0x2000\n/dev/loop0 0x82000 0x2000\n' > /tmp/fw_loop.config
	cat /tmp/fw_loop.config
	spec=block:/dev/loop0,name=env,offset=0x80000,size=0x4000,layout=u-boot-env-redundant,env-size=0x2000
	nvmemfs attach $spec || { fail "attach $spec"; nvmemfs unmount /nvmem; return; }
	refused "nvmemfs env set without --force on random bytes" "bad CRC" nvmemfs env env set board loop
	nvmemfs env --force env set board loop && ok "nvmemfs env --force env set board loop" || fail "env --force set"
	nvmemfs env env set serial# LOOP-0001 || fail "env set serial#"
	envsame() {
		a=$(nvmemfs env env | sort); b=$(fw_printenv -c /tmp/fw_loop.config 2>&1 | sort)
		if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$1: nvmemfs env and fw_printenv on /dev/loop0 read: $(echo $a)"
		else fail "$1: nvmemfs env: [$a], fw_printenv: [$b]"; fi
	}
	envsame "after nvmemfs env set"
	fw_setenv -c /tmp/fw_loop.config bootcmd "run loopboot" || fail "fw_setenv on /dev/loop0"
	envsame "after fw_setenv on /dev/loop0"
	nvmemfs env env set serial# LOOP-0002 || fail "env set over fw_setenv's copy"
	envsame "after nvmemfs env set over fw_setenv's copy"
	# Outside the window nothing changed.
	dd if=/dev/loop0 of=/tmp/want bs=16384 skip=32 seek=32 count=1 conv=notrunc 2>/dev/null
	same "bytes outside the environment's window unchanged" /dev/loop0 /tmp/want

	nvmemfs detach env || fail "detach env"
	[ -e /nvmem/env ] && fail "/nvmem/env after the detach" || ok "detach: env left the mount"
	losetup -d /dev/loop0 && ok "losetup -d /dev/loop0 after the detach" || fail "losetup -d /dev/loop0"
	nvmemfs unmount /nvmem
	echo "note: the block: checks ran $(awk -v a=$t0 '{ printf "%.1f", $1 - a }' /proc/uptime) s"
	PATH=/bin
}
shared_block_check
block_checks
echo "== guest result $rc"
poweroff -f
INIT
chmod +x "$r/init"
(cd "$r" && find . | "$work/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")
timeout 600 qemu-system-x86_64 -nographic -no-reboot -m 512 -smp 2 \
	-kernel "$(ls "$work"/k/boot/vmlinuz-*)" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet" | tee "$work/console.log"
grep -q '^== guest result 0' "$work/console.log"
