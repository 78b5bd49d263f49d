#!/usr/bin/env bash
# Integration test of nvmemfs on a real Linux kernel, under qemu.
#
# Boots Debian's own kernel (the one linux-image-amd64 points at) with a
# small initramfs: busybox, the kernel modules the test needs, the nvmemfs
# binary built from this tree, and init.sh as /init. In the guest, i2c-stub
# emulates two EEPROM-like chips on an SMBus-only adapter, so nvmemfs runs
# against the real i2c-dev, at24, nvmem and FUSE code of the kernel; see
# init.sh for the checks.
#
# Usage: bash integration/qemu/run.sh   (as root on Debian 12, or any user
# once qemu-system-x86 is installed)
#
# Exit status: 0 when the guest reports PASS, 1 when anything fails, 77 when
# the test cannot run on this machine at all (not x86-64, not Debian-like,
# qemu missing and not installable, the kernel not downloadable): the
# caller decides how loudly to skip.
#
# Environment:
#   NVMEMFS_QEMU_CACHE    where downloads are kept (default: .cache beside
#                         this script, git-ignored)
#   NVMEMFS_QEMU_TIMEOUT  seconds the guest may take, boot to power-off
#                         (default 300)
#   NVMEMFS_QEMU_ACCEL    kvm or tcg to force one (default: kvm when a
#                         test boot under it works, else tcg)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${NVMEMFS_QEMU_CACHE:-$here/.cache}
guest_timeout=${NVMEMFS_QEMU_TIMEOUT:-300}

# The modules the guest loads, in this order, each with the kernel option
# that builds it and its parameters. A module the kernel has built in (=y)
# is skipped; one it lacks is an error. Their own dependencies are found in
# the modules' "depends=" field (the .deb ships no modules.dep: depmod runs
# at installation) and loaded first.
#
# i2c-stub: chip_addr lists the addresses that answer. Each chip is 256
# bytes behind an 8-bit register pointer and speaks SMBus quick, byte,
# byte-data, word-data and I2C-block transfers (the default functionality),
# never plain I2C, so the at24 provider takes its SMBus path. 0x50 is for
# nvmemfs's own at24 provider; the kernel's at24 gets 0x51.
modules=(
	"fuse       CONFIG_FUSE_FS"
	"i2c-dev    CONFIG_I2C_CHARDEV"
	"i2c-stub   CONFIG_I2C_STUB     chip_addr=0x50,0x51"
	"at24       CONFIG_EEPROM_AT24"
)
# What must be built in for the guest to boot and talk: an initramfs
# (gzip), devtmpfs, a serial console. The I2C core, regmap-i2c and the
# nvmem core may be built in or modules (then they appear as dependencies).
builtin_options=(CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE CONFIG_NVMEM_SYSFS)
present_options=(CONFIG_I2C CONFIG_REGMAP_I2C CONFIG_NVMEM)

say() { printf '== %s\n' "$*"; }
skip() {
	printf 'qemu integration test: cannot run here: %s\n' "$*" >&2
	exit 77
}
die() {
	printf 'qemu integration test FAILED: %s\n' "$*" >&2
	exit 1
}
# Wall-clock seconds since a $EPOCHREALTIME taken earlier.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

t_all=$EPOCHREALTIME

[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || skip "needs an x86-64 Linux host (this is $(uname -s)/$(uname -m))"
for tool in apt-get apt-cache dpkg-deb; do
	command -v "$tool" >/dev/null || skip "$tool is missing: the kernel and busybox come from Debian packages"
done
for tool in go gzip timeout awk find; do
	command -v "$tool" >/dev/null || die "$tool is missing"
done

# apt-get update at most once, and only when something is not found: CI
# has just updated, and a developer's lists are usually fresh enough.
updated=
apt_update() {
	[ -z "$updated" ] || return 0
	updated=1
	[ "$(id -u)" -eq 0 ] || return 1
	say "apt-get update"
	apt-get update -qq
}

## 1. Prerequisites: qemu, the kernel, busybox.
t_prereq=$EPOCHREALTIME

if ! command -v qemu-system-x86_64 >/dev/null; then
	[ "$(id -u)" -eq 0 ] || skip "qemu-system-x86_64 is missing, and only root may apt-get install it"
	# Without recommends (GUI, OVMF, block drivers) it is about 17 MB to
	# download and 85 MB installed, seconds on a Debian mirror; with them
	# it would be ten times as much.
	say "installing qemu-system-x86 (no recommends)"
	install_qemu() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; }
	install_qemu || { apt_update && install_qemu; } || skip "apt-get install qemu-system-x86 failed"
fi

# The kernel linux-image-amd64 depends on now, such as
# linux-image-6.1.0-56-amd64: the metapackage itself holds no kernel.
kernel_package() {
	apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends: //p' | tr ',|' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-amd64\).*/\1/p'
}
kpkg=$(kernel_package) || true
if [ -z "$kpkg" ]; then
	apt_update || true
	kpkg=$(kernel_package) || true
fi
[ -n "$kpkg" ] || skip "apt-cache knows no linux-image-amd64 (no Debian package lists?)"
kver=${kpkg#linux-image-}

# fetch PACKAGE: sets deb to PACKAGE's .deb in the cache, downloading it
# unless a version of it is there already.
debs=$cache/debs
mkdir -p "$debs"
fetch() {
	deb=$(find "$debs" -maxdepth 1 -name "$1_*.deb" | sort | tail -n 1)
	[ -z "$deb" ] || return 0
	say "apt-get download $1"
	# As root apt drops to the _apt user to download, which cannot write
	# to the cache; downloading as root is what apt falls back to anyway.
	local opts=()
	[ "$(id -u)" -ne 0 ] || opts=(-o APT::Sandbox::User=root)
	download() { (cd "$debs" && apt-get download -qq "${opts[@]}" "$1"); }
	download "$1" || { apt_update && download "$1"; } || skip "apt-get download $1 failed"
	deb=$(find "$debs" -maxdepth 1 -name "$1_*.deb" | sort | tail -n 1)
	[ -n "$deb" ] || die "apt-get download $1 left no .deb in $debs"
}
# A kernel of an older ABI is of no more use: do not let them pile up.
find "$debs" -maxdepth 1 -name 'linux-image-*.deb' ! -name "${kpkg}_*" -delete
fetch "$kpkg"
kdeb=$deb
fetch busybox-static
bbdeb=$deb
d_prereq=$(since "$t_prereq")

## 2. Unpack, pick the modules, build nvmemfs, pack the initramfs.
t_build=$EPOCHREALTIME
work=$(mktemp -d "${TMPDIR:-/tmp}/nvmemfs-qemu.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "unpacking ${kdeb##*/} and ${bbdeb##*/}"
# The whole package (400 MB, a few seconds): a module's dependencies may be
# anywhere in the tree.
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bbdeb" "$work/busybox"
vmlinuz=$work/kernel/boot/vmlinuz-$kver
config=$work/kernel/boot/config-$kver
moddir=$work/kernel/lib/modules/$kver
if [ ! -f "$vmlinuz" ] || [ ! -f "$config" ] || [ ! -d "$moddir/kernel" ]; then
	die "$kpkg has no vmlinuz, config or modules for $kver"
fi

config_value() { sed -n "s/^$1=//p" "$config"; }
config_summary=""
for opt in "${builtin_options[@]}"; do
	v=$(config_value "$opt")
	[ "$v" = y ] || die "$kpkg: $opt is '${v:-not set}', the guest needs it built in"
	config_summary+=" $opt=y"
done
for opt in "${present_options[@]}"; do
	v=$(config_value "$opt")
	[ "$v" = y ] || [ "$v" = m ] || die "$kpkg: $opt is not set"
	config_summary+=" $opt=$v"
done

# Every module file of the kernel, by module name. Module names use "_"
# where file names may use "-" (i2c-stub.ko is the module i2c_stub, and
# "depends=" lists module names), so index by the "_" form.
declare -A ko_file=()
while IFS= read -r -d '' f; do
	b=${f##*/}
	b=${b%%.ko*}
	ko_file[${b//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko*' -print0)

# ko_cat FILE: the module, uncompressed (Debian 12's are not compressed;
# later releases xz them, and busybox's insmod may not take that).
ko_cat() {
	case $1 in
	*.ko) cat "$1" ;;
	*.ko.xz) xz -dc "$1" ;;
	*.ko.gz) gzip -dc "$1" ;;
	*.ko.zst) zstd -dc "$1" ;;
	*) die "unknown module format: $1" ;;
	esac
}
# ko_field FILE FIELD: a field of the module's .modinfo section (what
# modinfo -F prints), read without kmod, which a minimal host may lack.
ko_field() { ko_cat "$1" | tr '\0' '\n' | sed -n "s/^$2=//p"; }

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,nvmem,lib/modules}
load_order=()
declare -A added=()
# add_module NAME [PARAMETERS]: NAME's dependencies, then NAME, into the
# initramfs and its load order.
add_module() {
	local mod=${1//-/_} params=${2:-} f dep
	[ -z "${added[$mod]:-}" ] || return 0
	added[$mod]=1
	f=${ko_file[$mod]:-}
	[ -n "$f" ] || die "$kpkg has no module $1"
	for dep in $(ko_field "$f" depends | tr ',' ' '); do
		add_module "$dep"
	done
	local base=${f##*/}
	base=${base%%.ko*}.ko
	ko_cat "$f" >"$root/lib/modules/$base"
	load_order+=("$base${params:+ $params}")
}
builtin_modules=""
for entry in "${modules[@]}"; do
	read -r mod opt params <<<"$entry"
	case $(config_value "$opt") in
	y) builtin_modules+=" $mod" ;;
	m) add_module "$mod" "$params" ;;
	*) die "$kpkg: $opt is not set: no $mod" ;;
	esac
done
printf '%s\n' "${load_order[@]}" >"$root/lib/modules/modules.load"

say "building nvmemfs (static)"
(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o "$root/bin/nvmemfs" .)

# busybox with every applet as a symlink, and init.sh as /init.
install -m 0755 "$work/busybox/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/init.sh" "$root/init"

# cpio "newc" is the only format the kernel unpacks; busybox writes it, so
# the host needs no cpio package. /dev/console comes from the kernel's
# built-in initramfs, which ours is unpacked over.
(cd "$root" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$work/initramfs.gz"
d_build=$(since "$t_build")

## 3. Boot.
# KVM when /dev/kvm works, else TCG, which works everywhere and is fast
# enough here: the whole guest run takes seconds either way.
#
# A /dev/kvm that opens is not enough: under nested virtualisation it may
# refuse qemu's CPU models, or accept them and then spin forever in the
# guest's real-mode setup code. So first boot the kernel alone under KVM:
# without a root file system it must reach its panic (a few seconds even
# under TCG) and, with panic=-1 and -no-reboot, end qemu.
kvm_works() {
	local out
	out=$(timeout -k 5 20 qemu-system-x86_64 -accel kvm -m 256 -nographic -no-reboot -nic none \
		-kernel "$vmlinuz" -append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1) || true
	grep -q 'Kernel panic' <<<"$out"
}
t_probe=$EPOCHREALTIME
case ${NVMEMFS_QEMU_ACCEL:-} in
kvm) accel=kvm ;;
tcg) accel=tcg ;;
'')
	accel=tcg
	if [ ! -e /dev/kvm ]; then
		say "no /dev/kvm: qemu emulates the CPU (TCG)"
	elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		say "/dev/kvm is not usable by $(id -un): qemu emulates the CPU (TCG)"
	elif kvm_works; then
		accel=kvm
	else
		say "/dev/kvm is there but a test boot under KVM failed within 20 s: qemu emulates the CPU (TCG)"
	fi
	;;
*) die "NVMEMFS_QEMU_ACCEL: want kvm or tcg, not $NVMEMFS_QEMU_ACCEL" ;;
esac
d_probe=$(since "$t_probe")

say "kernel $kver from ${kdeb##*/}"
say "config:$config_summary"
say "modules (load order): ${load_order[*]}${builtin_modules:+; built in:$builtin_modules}"
say "initramfs $(($(stat -c %s "$work/initramfs.gz") / 1024)) KiB; booting with -accel $accel, timeout ${guest_timeout}s"
console=$cache/console.log
t_boot=$EPOCHREALTIME
qemu_rc=0
# -nographic: the serial port is the guest's console, on our stdout.
# -no-reboot with panic=-1: a guest that panics (its /init died) ends qemu
# at once instead of waiting for the timeout. -nic none: no network, and no
# network option ROM to load. sed drops the console's CRs and SeaBIOS's
# terminal resets, line by line (-u) so that the output shows as it comes.
timeout -k 10 "$guest_timeout" qemu-system-x86_64 -accel "$accel" -m 512 -smp 2 \
	-nographic -no-reboot -nic none \
	-kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 panic=-1 quiet" \
	</dev/null 2>&1 | sed -u 's/\r$//; s/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g' | tee "$console" || qemu_rc=$?
d_boot=$(since "$t_boot")

echo
say "times: prerequisites ${d_prereq}s, unpack+build+initramfs ${d_build}s, KVM probe ${d_probe}s, boot+tests ${d_boot}s, total $(since "$t_all")s (console kept in $console)"
if grep -q 'NVMEMFS-QEMU-RESULT: PASS' "$console"; then
	say "qemu integration test PASSED ($(grep -c '^PASS:' "$console") checks)"
	exit 0
fi
if grep -q 'NVMEMFS-QEMU-RESULT: FAIL' "$console"; then
	grep '^FAIL:' "$console" >&2 || true
	die "the guest reported failures (above)"
fi
[ "$qemu_rc" -ne 124 ] || die "the guest gave no result within ${guest_timeout}s (NVMEMFS_QEMU_TIMEOUT)"
die "the guest stopped without a result (qemu exit status $qemu_rc): see the console above"
