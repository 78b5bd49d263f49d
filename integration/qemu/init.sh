#!/bin/sh
# /init of the test guest (busybox ash, PID 1). run.sh packs it into the
# initramfs beside busybox, the kernel modules and the nvmemfs binaries:
# /opt/LABEL/nvmemfs, one for each line "LABEL DIR GOARCH=..." of
# /etc/nvmemfs-binaries (amd64; or arm64, then arm32 in the arm64 guest).
#
# It loads i2c-stub (an SMBus-only adapter with two emulated 256-byte chips
# at 0x50 and 0x51), i2c-dev, at24 and fuse, then checks each nvmemfs
# binary in turn against the real kernel:
#   - the at24 provider driving the stub's 0x50 from user space through
#     /dev/i2c-N (SMBus I2C-block transfers, as on a PC's SMBus controller);
#   - the refusal of an address a kernel driver holds, and of an absent chip;
#   - the sysfs mirror of the kernel's own at24 device at 0x51, attached by
#     the udev hook, and its removal when the kernel device is unbound while
#     descriptors on the mirror are open and being read.
# Each check prints one "PASS: [LABEL] ..." or "FAIL: [LABEL] ..." line, the
# label naming the binary (a check of the guest itself has none); between
# two binaries the kernel's at24 client at 0x51 is deleted, so the next one
# starts from the same state. The last line the
# host looks for is "NVMEMFS-QEMU-RESULT: PASS" (or FAIL). Then it powers
# off. Nothing here stops at the first failure: later checks still say what
# they can, and the result line is always printed.

export PATH=/bin
# run.sh links only /bin/sh to busybox: make the other applets' links here,
# where busybox runs (the arm64 one does not run on the host).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel gave PID 1 the console of its built-in initramfs; make sure the
# output goes to the serial console the host captures.
exec </dev/console >/dev/console 2>&1

passes=0
fails=0
tag="" # "[LABEL] " while a binary's checks run
pass() { passes=$((passes + 1)); echo "PASS: $tag$*"; }
fail() { fails=$((fails + 1)); echo "FAIL: $tag$*"; }
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
		for f in /tmp/nvmemfs-*.log; do
			[ -e "$f" ] || continue
			echo "-- nvmemfs server log ($f)"
			cat "$f"
		done
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
# A module built out of tree (i2c-stub on arm64) is unsigned: the kernel
# says so once and taints itself, and loads it.
dmesg | grep -i -e 'i2c.stub' -e 'module verification' -e 'disagrees about version' -e 'version magic'

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

# i2c-eepromsim (built by run.sh for the arm64 guest): plain I2C messages
# only, a 24c32-like EEPROM at 0x54.
rbus=""
if grep -q '^i2c-eepromsim' /lib/modules/modules.load; then
	section "the i2c-eepromsim adapter"
	for d in /sys/class/i2c-adapter/i2c-*; do
		[ "$(cat "$d/name" 2>/dev/null)" = "nvmemfs EEPROM simulator" ] && rbus=${d##*/i2c-}
	done
	if [ -n "$rbus" ] && [ -c "/dev/i2c-$rbus" ]; then
		pass "i2c-eepromsim is i2c-$rbus, /dev/i2c-$rbus is there"
	else
		fail "no adapter named \"nvmemfs EEPROM simulator\" with its /dev/i2c-N"
		rbus=""
	fi
fi


# elf_kind FILE: what an ELF file holds, from its class (byte 4: 1 for
# 32-bit, 2 for 64-bit) and the low byte of its e_machine (byte 18).
elf_kind() {
	case "$(byte "$1" 4)/$(byte "$1" 18)" in
	0x02/0x3e) echo "64-bit x86-64" ;;
	0x02/0xb7) echo "64-bit AArch64" ;;
	0x01/0x28) echo "32-bit ARM" ;;
	*) echo "ELF class/machine $(byte "$1" 4)/$(byte "$1" 18)" ;;
	esac
}

# rdwr_checks: the 24c32 of i2c-eepromsim, attached to the running server:
# every transfer an I2C_RDWR of plain I2C messages with a 16-bit word
# address, and page writes the chip NAKs its address after (its write
# cycle), so that nvmemfs polls through real ENXIOs.
rdwr_checks() {
	section "at24 over /dev/i2c-$rbus: a 24c32 on a plain-I2C adapter (I2C_RDWR, 16-bit word addresses)"
	params=/sys/module/i2c_eepromsim/parameters
	naks0=$(cat $params/naks)
	msgs0=$(cat $params/messages)
	rspec="at24:nvmemfs EEPROM simulator:0x54,chip=24c32,pagesize=32,name=rdwr-eeprom"
	if out=$(nvmemfs attach "$rspec" 2>&1); then
		pass "nvmemfs attach \"$rspec\""
	else
		fail "nvmemfs attach \"$rspec\": $out"
		return
	fi
	big=/nvmem/rdwr-eeprom/nvmem
	dd if=/dev/urandom of=/tmp/pattern3 bs=4096 count=1 2>/dev/null
	if out=$(dd if=/tmp/pattern3 of=$big bs=4096 count=1 conv=notrunc 2>&1); then
		pass "4096 random bytes written with dd (128 page writes of 32 bytes)"
	else
		fail "dd to $big: $out"
	fi
	if out=$(cmp /tmp/pattern3 $big 2>&1); then
		pass "read back with cmp: the same 4096 bytes"
	else
		fail "cmp /tmp/pattern3 $big: $out"
	fi
	n=$(($(cat $params/naks) - naks0))
	if [ "$n" -gt 0 ]; then
		pass "the chip NAKed $n messages during its write cycles, and nvmemfs polled through them ($(($(cat $params/messages) - msgs0)) messages transferred)"
	else
		fail "the chip NAKed no message after the page writes (write cycle $(cat $params/write_cycle_us) us)"
	fi
	# On the chip itself, by busybox's i2ctransfer (its own I2C_RDWR, a
	# 64-bit process): the word address high byte first.
	bad=""
	for off in 0x0000 0x0123 0x0ffc; do
		want=$(hexdump -s $((off)) -n 4 -e '4/1 "0x%02x "' /tmp/pattern3)
		got=$(i2ctransfer -y "$rbus" w2@0x54 $((off >> 8)) $((off & 0xff)) r4 2>&1)
		[ "$(echo $got)" = "$(echo $want)" ] || bad="$bad at $off: chip has $got, pattern $want;"
	done
	if [ -z "$bad" ]; then pass "i2ctransfer reads the pattern from the chip (4 bytes at 0x0000 0x0123 0x0ffc)"; else fail "i2ctransfer:$bad"; fi
	if out=$(i2ctransfer -y "$rbus" w3@0x54 0x0a 0xbc 0x5a 2>&1) && [ "$(byte $big 2748)" = 0x5a ]; then
		pass "a byte written at 0x0abc with i2ctransfer shows through nvmemfs at once"
	else
		fail "i2ctransfer write at 0x0abc: $out; nvmemfs reads $(byte $big 2748)"
	fi
	n=$(dd if=$big bs=1 skip=4090 count=10 2>/dev/null | wc -c)
	if [ "$n" -eq 6 ]; then pass "a read crossing the end is cut short (6 of 10 bytes)"; else fail "read of 10 at 4090: got $n bytes, want 6"; fi
	if out=$(nvmemfs detach rdwr-eeprom 2>&1) && [ ! -e /nvmem/rdwr-eeprom ]; then
		pass "nvmemfs detach rdwr-eeprom"
	else
		fail "nvmemfs detach rdwr-eeprom: $out"
	fi
	rm -f /tmp/pattern3
}

# The checks of one binary: nvmemfs on PATH is the binary. A check the
# later ones cannot do without returns early; the rest go on.
checks() {
	section "at24 over /dev/i2c-$bus: the stub's chip at 0x50, driven from user space"
	mkdir -p /nvmem
	# By the adapter's name, as a USB bridge would be configured. pagesize=8 is
	# a real 24c02's page: each page goes as one SMBus I2C-block write.
	spec="at24:SMBus stub driver:0x50,chip=24c02,pagesize=8,type=eeprom,name=stub-eeprom"
	if out=$(nvmemfs mount --log "$log" --device "$spec" /nvmem 2>&1); then
		pass "nvmemfs mount --device \"$spec\" /nvmem"
	else
		fail "nvmemfs mount --device \"$spec\" /nvmem: $out"
		return
	fi
	eeprom=/nvmem/stub-eeprom
	# The server the kernel runs is the binary meant: in the arm64 guest
	# the arm32 one goes through the kernel's compat layer (32-bit
	# i2c_smbus_ioctl_data and i2c_msg, FUSE from a 32-bit process).
	server=$(pidof nvmemfs)
	kind=$(elf_kind "/proc/$server/exe" 2>&1)
	if [ "$kind" = "$want_kind" ]; then
		pass "the server (pid $server) runs as a $kind process, on $(uname -m) Linux"
	else
		fail "the server (pid $server) is $kind, want $want_kind"
	fi

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

	if [ -n "$rbus" ]; then
		rdwr_checks
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
		return
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
		return
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
	if dmesg | tail -n +"$((klog0 + 1))" | grep -E 'BUG:|WARNING:|Oops|Call Trace|general protection'; then
		fail "the kernel complained (above)"
	else
		pass "no BUG, WARNING or Oops in the kernel log since the $label checks began"
	fi

}

# cleanup: leave nothing of one binary's checks behind for the next: no
# server, no mount, no kernel at24 client at 0x51 (unbound, or still bound
# when the checks stopped early), so that new_device works again.
cleanup() {
	exec 3<&-
	if grep -q ' /nvmem ' /proc/mounts; then
		nvmemfs unmount /nvmem >/dev/null 2>&1 || umount -l /nvmem
	fi
	for pid in $(pidof nvmemfs); do kill "$pid"; done
	waitfor 5 sh -c '! pidof nvmemfs >/dev/null' || echo "warning: nvmemfs still running: $(pidof nvmemfs)"
	if [ -e "/sys/bus/i2c/devices/$bus-0051" ]; then
		echo 0x51 >"/sys/bus/i2c/devices/i2c-$bus/delete_device" || fail "delete_device 0x51 on i2c-$bus"
	fi
	rm -f /tmp/pattern /tmp/pattern2 /tmp/sixteen /tmp/bg.count /tmp/bg.err /tmp/bg.done
}

# shellcheck disable=SC2013 # a label is one word, and the checks must not read the list on stdin
for label in $(cut -d' ' -f1 /etc/nvmemfs-binaries); do
	what=$(sed -n "s|^$label [^ ]* ||p" /etc/nvmemfs-binaries)
	PATH=/opt/$label:/bin
	log=/tmp/nvmemfs-$label.log
	tag="[$label] "
	r0=$(uptime_s)
	p0=$passes
	f0=$fails
	# Only the kernel's messages from now on count for this binary.
	klog0=$(dmesg | wc -l)
	case $what in
	GOARCH=amd64*) want_kind="64-bit x86-64" ;;
	GOARCH=arm64*) want_kind="64-bit AArch64" ;;
	GOARCH=arm*) want_kind="32-bit ARM" ;;
	*) want_kind="?" ;;
	esac
	section "$label: the checks, by /opt/$label/nvmemfs ($what: $(elf_kind "/opt/$label/nvmemfs"))"
	checks
	cleanup
	tag=""
	PATH=/bin
	echo "== $label: checks took $(awk "BEGIN { print $(uptime_s) - $r0 }") s, $((passes - p0)) passed, $((fails - f0)) failed"
done

finish
