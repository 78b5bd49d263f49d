#!/bin/sh
# /init of the test guest (busybox ash, PID 1). run.sh packs it into the
# initramfs beside busybox, the kernel modules and the nvmemfs binary.
#
# It loads i2c-stub (an SMBus-only adapter with two emulated 256-byte chips
# at 0x50 and 0x51), i2c-dev, at24 and fuse, then checks nvmemfs against
# the real kernel:
#   - the at24 provider driving the stub's 0x50 from user space through
#     /dev/i2c-N (SMBus I2C-block transfers, as on a PC's SMBus controller);
#   - the refusal of an address a kernel driver holds, and of an absent chip;
#   - the sysfs mirror of the kernel's own at24 device at 0x51, attached by
#     the udev hook, and its removal when the kernel device is unbound while
#     descriptors on the mirror are open and being read.
# Each check prints one "PASS: ..." or "FAIL: ..." line; the last line the
# host looks for is "NVMEMFS-QEMU-RESULT: PASS" (or FAIL). Then it powers
# off. Nothing here stops at the first failure: later checks still say what
# they can, and the result line is always printed.

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel gave PID 1 the console of its built-in initramfs; make sure the
# output goes to the serial console the host captures.
exec </dev/console >/dev/console 2>&1

passes=0
fails=0
pass() { passes=$((passes + 1)); echo "PASS: $*"; }
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }
section() { echo; echo "== $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# waitfor SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds
# (0) or the time is up (1). Things that follow an event asynchronously
# (the udev hook's attach, the mirror's removal) are given a few seconds.
waitfor() {
	tries=$(($1 * 10))
	shift
	while [ "$tries" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

# byte FILE OFFSET: one byte of FILE as 0xNN, the way busybox i2cget prints.
byte() { hexdump -s "$2" -n 1 -e '1/1 "0x%02x"' "$1"; }

finish() {
	section "result"
	if [ "$fails" -ne 0 ]; then
		echo "-- nvmemfs server log (/tmp/nvmemfs.log)"
		cat /tmp/nvmemfs.log 2>/dev/null
		echo "-- kernel log (last 40 lines)"
		dmesg | tail -n 40
	fi
	echo "tests took $(awk "BEGIN { print $(uptime_s) - $t0 }") s of guest time, $passes passed, $fails failed"
	if [ "$fails" -eq 0 ] && [ "$passes" -gt 0 ]; then
		echo "NVMEMFS-QEMU-RESULT: PASS"
	else
		echo "NVMEMFS-QEMU-RESULT: FAIL"
	fi
	sync
	poweroff -f
	# Should poweroff fail, leaving makes the kernel panic, and with
	# panic=-1 and qemu's -no-reboot that ends qemu as well.
	exit 1
}

t0=$(uptime_s)
section "guest: Linux $(uname -r), up $t0 s at /init"
dmesg | grep -i 'hypervisor detected' || echo "no hypervisor detected: qemu TCG"

section "kernel modules"
# modules.load is written by run.sh: one "FILE.ko PARAMETERS" a line, in
# dependency order.
loaded=""
while read -r ko params; do
	# shellcheck disable=SC2086 # the parameters are separate words
	if out=$(insmod "/lib/modules/$ko" $params 2>&1); then
		loaded="$loaded ${ko%.ko}${params:+ ($params)}"
	else
		fail "insmod $ko $params: $out"
	fi
done </lib/modules/modules.load
[ -n "$loaded" ] && pass "loaded:$loaded"

section "the i2c-stub adapter"
bus=""
for d in /sys/class/i2c-adapter/i2c-*; do
	[ "$(cat "$d/name" 2>/dev/null)" = "SMBus stub driver" ] && bus=${d##*/i2c-}
done
if [ -z "$bus" ]; then
	fail "no adapter named \"SMBus stub driver\" in /sys/class/i2c-adapter: $(cat /sys/class/i2c-adapter/*/name 2>/dev/null | tr '\n' ' ')"
	finish
fi
if [ -c "/dev/i2c-$bus" ]; then
	pass "i2c-stub is i2c-$bus, /dev/i2c-$bus is there"
else
	fail "i2c-stub is i2c-$bus but /dev/i2c-$bus is missing (i2c-dev?)"
	finish
fi

section "at24 over /dev/i2c-$bus: the stub's chip at 0x50, driven from user space"
mkdir -p /nvmem
# By the adapter's name, as a USB bridge would be configured. pagesize=8 is
# a real 24c02's page: each page goes as one SMBus I2C-block write.
spec="at24:SMBus stub driver:0x50,chip=24c02,pagesize=8,type=eeprom,name=stub-eeprom"
if out=$(nvmemfs mount --log /tmp/nvmemfs.log --device "$spec" /nvmem 2>&1); then
	pass "nvmemfs mount --device \"$spec\" /nvmem"
else
	fail "nvmemfs mount --device \"$spec\" /nvmem: $out"
	finish
fi
eeprom=/nvmem/stub-eeprom

t=$(cat $eeprom/type 2>&1)
if [ "$t" = EEPROM ]; then pass "$eeprom/type is EEPROM"; else fail "$eeprom/type: want EEPROM, got \"$t\""; fi

dd if=/dev/urandom of=/tmp/pattern bs=256 count=1 2>/dev/null
if out=$(dd if=/tmp/pattern of=$eeprom/nvmem bs=256 count=1 conv=notrunc 2>&1); then
	pass "256 random bytes written with dd"
else
	fail "dd to $eeprom/nvmem: $out"
fi
if out=$(cmp /tmp/pattern $eeprom/nvmem 2>&1); then
	pass "read back with cmp: the same 256 bytes"
else
	fail "cmp /tmp/pattern $eeprom/nvmem: $out"
fi

# The bytes must be on the chip, not in some cache: read a few with
# i2cget (SMBus read byte data, beside nvmemfs's own descriptor), and
# change one behind nvmemfs's back with i2cset.
bad=""
for off in 0 1 127 200 255; do
	want=$(byte /tmp/pattern $off)
	# busybox's i2cget takes the register in hex, with or without 0x.
	got=$(i2cget -y "$bus" 0x50 "$(printf 0x%02x $off)" b 2>&1)
	[ "$got" = "$want" ] || bad="$bad offset $off: chip has $got, pattern $want;"
done
if [ -z "$bad" ]; then pass "i2cget reads the pattern from the chip (offsets 0 1 127 200 255)"; else fail "i2cget:$bad"; fi
if i2cset -y "$bus" 0x50 0x10 0xa5 b && [ "$(byte $eeprom/nvmem 16)" = 0xa5 ]; then
	pass "a byte set with i2cset shows through nvmemfs at once"
else
	fail "i2cset 0x10=0xa5, nvmemfs reads $(byte $eeprom/nvmem 16)"
fi

# Reads at the end: cut short at the device's end, then end of file.
n=$(dd if=$eeprom/nvmem bs=1 skip=250 count=10 2>/dev/null | wc -c)
if [ "$n" -eq 6 ]; then pass "a read crossing the end is cut short (6 of 10 bytes)"; else fail "read of 10 at 250: got $n bytes, want 6"; fi

ls_out=$(nvmemfs ls 2>&1)
echo "$ls_out"
if echo "$ls_out" | grep -Eq '^stub-eeprom +EEPROM +256 +0644 .*at24:SMBus stub driver:0x50'; then
	pass "nvmemfs ls lists stub-eeprom: EEPROM, 256 bytes, 0644, its SPEC"
else
	fail "nvmemfs ls does not list stub-eeprom as expected"
fi

section "addresses nvmemfs must not drive"
# 0x52 has no chip: i2c-stub answers an absent address with ENODEV (a
# real adapter with ENXIO); the attach probes and refuses it.
if out=$(nvmemfs attach "at24:$bus:0x52,name=absent" 2>&1); then
	fail "attach at24:$bus:0x52 (no chip there) succeeded"
	nvmemfs detach absent >/dev/null 2>&1
else
	pass "attach of an absent chip fails: $out"
fi

# The kernel's at24 driver takes 0x51: nvmemfs must leave it alone.
echo 24c02 0x51 >"/sys/bus/i2c/devices/i2c-$bus/new_device"
client="$bus-0051"
if waitfor 5 test -e "/sys/bus/i2c/devices/$client/driver"; then
	pass "the kernel's at24 bound $client ($(readlink "/sys/bus/i2c/devices/$client/driver" | sed 's|.*/||'))"
else
	fail "new_device 24c02 0x51: no driver bound to $client"
fi
if out=$(nvmemfs attach "at24:$bus:0x51,name=x" 2>&1); then
	fail "attach at24:$bus:0x51 succeeded on an address the kernel's at24 holds"
	nvmemfs detach x >/dev/null 2>&1
elif echo "$out" | grep -q "in use by a kernel driver"; then
	pass "attach at24:$bus:0x51 refused: $out"
else
	fail "attach at24:$bus:0x51 failed, but not for the kernel driver: $out"
fi

section "the sysfs mirror of the kernel's at24 device"
# at24 registers its nvmem device as a child of the client, named after it
# plus an id (NVMEM_DEVID_AUTO): find it rather than guess.
name=""
for d in "/sys/bus/i2c/devices/$client"/*/; do
	[ -f "$d/nvmem" ] && name=$(basename "$d") && break
done
echo "kernel nvmem devices: $(ls /sys/bus/nvmem/devices | tr '\n' ' ')"
if [ -n "$name" ] && [ -e "/sys/bus/nvmem/devices/$name/nvmem" ]; then
	pass "the kernel's nvmem device for $client is $name"
else
	fail "no nvmem device under /sys/bus/i2c/devices/$client"
	finish
fi
knvmem=/sys/bus/nvmem/devices/$name/nvmem

# Give the kernel's chip content of its own, written through the kernel.
dd if=/dev/urandom of=/tmp/pattern2 bs=256 count=1 2>/dev/null
if out=$(dd if=/tmp/pattern2 of="$knvmem" bs=256 count=1 conv=notrunc 2>&1) && cmp -s /tmp/pattern2 "$knvmem"; then
	pass "256 random bytes written through the kernel's $knvmem"
else
	fail "writing the kernel's $knvmem: $out"
fi

# Attach it the way udev would on the kernel's add event.
devpath=$(readlink -f "/sys/bus/nvmem/devices/$name")
devpath=${devpath#/sys}
if out=$(ACTION=add SUBSYSTEM=nvmem KERNEL="$name" DEVPATH="$devpath" nvmemfs udev 2>&1); then
	pass "ACTION=add SUBSYSTEM=nvmem KERNEL=$name DEVPATH=$devpath nvmemfs udev"
else
	fail "nvmemfs udev (add $name): $out"
fi
mirror=/nvmem/$name
if waitfor 5 test -e "$mirror/nvmem"; then
	pass "$mirror appeared"
else
	fail "$mirror did not appear within 5 s"
	finish
fi
t=$(cat "$mirror/type" 2>&1)
if [ "$t" = EEPROM ]; then pass "$mirror/type is EEPROM (the kernel's)"; else fail "$mirror/type: want EEPROM, got \"$t\""; fi
if cmp "$knvmem" "$mirror/nvmem" && cmp -s /tmp/pattern2 "$mirror/nvmem"; then
	pass "the mirror reads what the kernel's file holds"
else
	fail "the mirror's content differs from the kernel's"
fi
# A write through the mirror reaches the kernel's device.
printf 'written-by-fuse!' >/tmp/sixteen
if dd if=/tmp/sixteen of="$mirror/nvmem" bs=16 seek=2 count=1 conv=notrunc 2>/dev/null &&
	[ "$(dd if="$knvmem" bs=16 skip=2 count=1 2>/dev/null)" = written-by-fuse! ]; then
	pass "16 bytes written through the mirror are in the kernel's file"
else
	fail "a write through the mirror did not reach $knvmem"
fi

section "unbinding the kernel's device under open descriptors"
# Descriptor 3, opened here before the unbind, read once before and once
# after. Another reader, in the background with its own descriptor, reads
# a byte at a time, so that reads are in flight when the device goes.
exec 3<"$mirror/nvmem"
if [ "$(dd bs=16 count=1 <&3 2>/dev/null | wc -c)" -eq 16 ]; then
	pass "descriptor 3 on $mirror/nvmem reads before the unbind"
else
	fail "descriptor 3 on $mirror/nvmem does not read"
fi
rm -f /tmp/bg.count /tmp/bg.err /tmp/bg.done
(
	exec 4<"$mirror/nvmem"
	n=0
	# Past the end a read returns 0 bytes, dd succeeds and the loop keeps
	# going: only an error ends it. A bound keeps a broken build finite.
	while [ "$n" -lt 20000 ] && dd bs=1 count=1 <&4 >/dev/null 2>/tmp/bg.err; do
		n=$((n + 1))
		echo "$n" >/tmp/bg.count
	done
	echo "$n" >/tmp/bg.done
) &
bg=$!
# shellcheck disable=SC2016 # expanded by the inner shell, at each try
waitfor 10 sh -c '[ "$(cat /tmp/bg.count 2>/dev/null || echo 0)" -ge 5 ]' || fail "the background reader did not start reading"
if echo "$client" >/sys/bus/i2c/drivers/at24/unbind; then
	pass "echo $client > /sys/bus/i2c/drivers/at24/unbind (the reader had done $(cat /tmp/bg.count) reads)"
else
	fail "unbinding $client"
fi
[ -e "/sys/bus/nvmem/devices/$name" ] && fail "the kernel still lists $name after the unbind"

out=$(dd bs=16 count=1 <&3 2>&1 >/dev/null)
rc=$?
if [ "$rc" -ne 0 ] && echo "$out" | grep -q "No such device"; then
	pass "descriptor 3 fails after the unbind: $out"
else
	fail "descriptor 3 after the unbind: exit $rc, want ENODEV (\"No such device\"): $out"
fi
if waitfor 5 test -e /tmp/bg.done; then
	# ENODEV, or EIO for the read in flight when the driver started to go
	# (at24 refuses it with EACCES, which the mirror reports as EIO).
	if grep -q -e "No such device" -e "Input/output error" /tmp/bg.err; then
		pass "the background reader stopped after $(cat /tmp/bg.done) reads: $(cat /tmp/bg.err)"
	else
		fail "the background reader stopped after $(cat /tmp/bg.done) reads, but not with ENODEV or EIO: $(cat /tmp/bg.err)"
	fi
else
	fail "the background reader still reads 5 s after the unbind"
	kill "$bg" 2>/dev/null
fi
wait "$bg" 2>/dev/null
exec 3<&-

if waitfor 5 sh -c "! ls /nvmem | grep -qx '$name'"; then
	pass "$mirror left the listing: $(ls /nvmem | tr '\n' ' ')"
else
	fail "$mirror is still listed 5 s after the unbind"
fi
if [ -e "$mirror" ]; then
	fail "a fresh lookup of $mirror still finds it"
else
	pass "a fresh lookup of $mirror fails: $(ls "$mirror" 2>&1)"
fi
# udev's remove event follows the unbind; the hook must not fail on a
# device the server already dropped (the detach is asynchronous).
if out=$(ACTION=remove SUBSYSTEM=nvmem KERNEL="$name" DEVPATH="$devpath" nvmemfs udev 2>&1); then
	pass "ACTION=remove ... nvmemfs udev exits 0 for the device already gone"
else
	fail "nvmemfs udev (remove $name): $out"
fi

section "the server carries on"
if pidof nvmemfs >/dev/null && ls_out=$(nvmemfs ls 2>&1); then
	pass "the server is alive and answers ls"
	echo "$ls_out"
else
	fail "the server is gone: $ls_out"
fi
printf '\xa5' | dd of=/tmp/pattern bs=1 seek=16 conv=notrunc 2>/dev/null # the i2cset byte
if cmp /tmp/pattern $eeprom/nvmem; then
	pass "stub-eeprom still reads its content"
else
	fail "stub-eeprom no longer reads its content"
fi

section "unmount"
if out=$(nvmemfs unmount /nvmem 2>&1); then
	pass "nvmemfs unmount /nvmem"
else
	fail "nvmemfs unmount /nvmem: $out"
fi
if waitfor 5 sh -c '! pidof nvmemfs >/dev/null' && ! grep -q ' /nvmem ' /proc/mounts; then
	pass "the server exited and /nvmem is no longer mounted"
else
	fail "after unmount: server pids [$(pidof nvmemfs)], mounts: $(grep ' /nvmem ' /proc/mounts)"
fi

section "kernel log"
if dmesg | grep -E 'BUG:|WARNING:|Oops|Call Trace|general protection'; then
	fail "the kernel complained (above)"
else
	pass "no BUG, WARNING or Oops in the kernel log"
fi

finish
