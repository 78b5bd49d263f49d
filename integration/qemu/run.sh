#!/usr/bin/env bash
# Integration test of nvmemfs on a real Linux kernel, under qemu.
#
# Boots Debian's own kernel (the one linux-image-ARCH points at) with a
# small initramfs: busybox, the kernel modules the test needs, the nvmemfs
# binaries built from this tree, and init.sh as /init. In the guest,
# i2c-stub emulates two EEPROM-like chips on an SMBus-only adapter, so
# nvmemfs runs against the real i2c-dev, at24, nvmem and FUSE code of the
# kernel; init.sh runs its checks once for each nvmemfs binary.
#
# Two guests:
#   amd64  Debian's x86-64 kernel under qemu-system-x86_64 (KVM when it
#          works, else TCG), checked by the amd64 binary.
#   arm64  Debian's arm64 kernel under qemu-system-aarch64 -M virt
#          -cpu cortex-a57 (TCG), checked by the arm64 binary and then by
#          a 32-bit arm binary (GOARCH=arm GOARM=7) in the same guest, which
#          goes through the kernel's compat ioctl path. Debian's arm64
#          kernel lacks i2c-stub: it is built here, out of tree, from
#          Debian's linux-source and linux-headers packages with the
#          kernel's own compiler (gcc-12-aarch64-linux-gnu), once per
#          kernel ABI, and kept in the cache.
#
# Usage: bash integration/qemu/run.sh [amd64|arm64]   (as root on Debian 12,
# or any user once qemu and, for arm64, the cross compiler are installed)
#
# Exit status: 0 when the guest reports PASS, 1 when anything fails, 77 when
# the test cannot run on this machine at all (not x86-64, not Debian-like,
# qemu or the compiler missing and not installable, a package not
# downloadable): the caller decides how loudly to skip.
#
# Environment:
#   NVMEMFS_QEMU_ARCH     the guest, amd64 (default) or arm64; an argument
#                         wins over it
#   NVMEMFS_QEMU_CACHE    where downloads are kept (default: .cache beside
#                         this script, git-ignored)
#   NVMEMFS_QEMU_TIMEOUT  seconds the guest may take, boot to power-off
#                         (default 300)
#   NVMEMFS_QEMU_ACCEL    kvm or tcg to force one (default: for amd64, kvm
#                         when a test boot under it works, else tcg; arm64
#                         is always tcg)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${NVMEMFS_QEMU_CACHE:-$here/.cache}
guest_timeout=${NVMEMFS_QEMU_TIMEOUT:-300}
arch=${1:-${NVMEMFS_QEMU_ARCH:-amd64}}

say() { printf '== %s\n' "$*"; }
skip() {
	printf 'qemu integration test (%s): cannot run here: %s\n' "$arch" "$*" >&2
	exit 77
}
die() {
	printf 'qemu integration test (%s) FAILED: %s\n' "$arch" "$*" >&2
	exit 1
}
# Wall-clock seconds since a $EPOCHREALTIME taken earlier.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# What differs between the guests. binaries: one "LABEL GOARCH [GOARM]" a
# binary, checked in this order.
case $arch in
amd64)
	qemu="qemu-system-x86_64"
	qemu_package="qemu-system-x86"
	qemu_machine=()
	serial=ttyS0
	serial_option=CONFIG_SERIAL_8250_CONSOLE
	binaries=("amd64 amd64")
	debs=$cache/debs
	console=$cache/console.log
	;;
arm64)
	qemu="qemu-system-aarch64"
	qemu_package="qemu-system-arm"
	# virt: the generic board, described to the kernel by a device tree:
	# a PL011 UART (ttyAMA0), virtio, no I2C controller of its own.
	# cortex-a57 runs AArch32 code at EL0, which the 32-bit binary needs.
	qemu_machine=(-M virt -cpu cortex-a57)
	serial=ttyAMA0
	serial_option=CONFIG_SERIAL_AMBA_PL011_CONSOLE
	binaries=("arm64 arm64" "arm32 arm 7")
	debs=$cache/arm64/debs
	console=$cache/console-arm64.log
	;;
*)
	printf 'usage: %s [amd64|arm64] (or NVMEMFS_QEMU_ARCH): no guest "%s"\n' "$0" "$arch" >&2
	exit 1
	;;
esac

# The modules the guest loads, in this order, each with the kernel option
# that builds it and its parameters. A module the kernel has built in (=y)
# is skipped; one it lacks is an error, except i2c-stub on arm64, which is
# built here (see build_modules). Their own dependencies are found in the modules' "depends="
# field (the .deb ships no modules.dep: depmod runs at installation) and
# loaded first.
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
# The arm64 guest builds i2c-stub (Debian's arm64 kernel lacks it), and
# i2c-eepromsim.c (beside this script): an adapter of plain I2C messages,
# no SMBus, with a 24c32-like EEPROM at 0x54, which nvmemfs reaches through
# I2C_RDWR with 16-bit word addresses. The option "-": always built here.
[ "$arch" != arm64 ] || modules+=("i2c-eepromsim  -  addr=0x54")
# What must be built in for the guest to boot and talk: an initramfs
# (gzip), devtmpfs, a serial console. The I2C core, regmap-i2c and the
# nvmem core may be built in or modules (then they appear as dependencies).
builtin_options=(CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS "$serial_option" CONFIG_NVMEM_SYSFS)
present_options=(CONFIG_I2C CONFIG_REGMAP_I2C CONFIG_NVMEM)
# The 32-bit binary needs the kernel to run AArch32 tasks.
[ "$arch" != arm64 ] || builtin_options+=(CONFIG_COMPAT)

t_all=$EPOCHREALTIME

[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || skip "needs an x86-64 Linux host (this is $(uname -s)/$(uname -m))"
for tool in apt-get apt-cache dpkg-deb; do
	command -v "$tool" >/dev/null || skip "$tool is missing: the kernel and busybox come from Debian packages"
done
for tool in go gzip timeout awk find; do
	command -v "$tool" >/dev/null || die "$tool is missing"
done

# The host's apt: apt-get update at most once, and only when something is
# not found: CI has just updated, and a developer's lists are usually fresh
# enough.
updated=
host_apt_update() {
	[ -z "$updated" ] || return 0
	updated=1
	[ "$(id -u)" -eq 0 ] || return 1
	say "apt-get update"
	apt-get update -qq
}

# host_tool COMMAND PACKAGE: installs PACKAGE from the host's apt, without
# recommends, unless COMMAND is there already.
host_tool() {
	command -v "$1" >/dev/null && return 0
	[ "$(id -u)" -eq 0 ] || skip "$1 is missing, and only root may apt-get install $2"
	say "installing $2 (no recommends)"
	local t=$EPOCHREALTIME
	install_it() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null; }
	install_it "$2" || { host_apt_update && install_it "$2"; } || skip "apt-get install $2 failed"
	command -v "$1" >/dev/null || die "$2 is installed but $1 is not there"
	say "installed $2 in $(since "$t")s"
}

# The guest's packages. amd64: the host's own apt. arm64: the host's
# sources, but lists and state of their own under the cache, for amd64 and
# arm64, so that the host's dpkg gets no foreign architecture and the
# versions of the arm64 kernel, its headers and the amd64 kbuild tools all
# come from one apt-get update. Those lists are refreshed once a day (a
# kernel ABI bump removes the old packages from the mirror).
apt_opts=()
apt_private_update() { return 1; }
if [ "$arch" = arm64 ]; then
	state=$cache/arm64/apt
	mkdir -p "$state/lists/partial" "$state/archives/partial"
	: >>"$state/status"
	apt_opts=(
		-o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status" -o "Dir::Cache=$state"
		-o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
		-o Acquire::Languages=none -o Debug::NoLocking=1
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
	)
	# As root apt drops to the _apt user to download, which cannot write
	# to the cache; downloading as root is what apt falls back to anyway.
	[ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
	private_updated=
	apt_private_update() {
		[ -z "$private_updated" ] || return 1
		private_updated=1
		say "apt-get update (amd64 and arm64 lists in $state)"
		apt-get "${apt_opts[@]}" update -qq
	}
	if [ -z "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440)" ]; then
		apt_private_update || [ -n "$(find "$state/lists" -maxdepth 1 -name '*_Packages*')" ] ||
			skip "apt-get update of the arm64 lists failed, and none are cached"
	fi
fi
guest_apt_update() {
	if [ "$arch" = arm64 ]; then apt_private_update; else host_apt_update; fi
}

## 1. Prerequisites: qemu, the kernel, busybox.
t_prereq=$EPOCHREALTIME

# Without recommends (GUI, firmware, block drivers): qemu-system-x86 is
# about 17 MB to download and 85 MB installed, seconds on a Debian mirror;
# with them it would be ten times as much.
host_tool "$qemu" "$qemu_package"

# The kernel linux-image-ARCH depends on now, such as
# linux-image-6.1.0-56-amd64: the metapackage itself holds no kernel.
pkg_arch=
[ "$arch" = amd64 ] || pkg_arch=:$arch
kernel_package() {
	apt-cache "${apt_opts[@]}" show --no-all-versions "linux-image-$arch$pkg_arch" 2>/dev/null |
		sed -n 's/^Depends: //p' | tr ',|' '\n' | sed -n "s/^ *\(linux-image-[0-9][^ ]*-$arch\).*/\1/p"
}
kpkg=$(kernel_package) || true
if [ -z "$kpkg" ]; then
	guest_apt_update || true
	kpkg=$(kernel_package) || true
fi
[ -n "$kpkg" ] || skip "apt-cache knows no linux-image-$arch (no Debian package lists?)"
kver=${kpkg#linux-image-}
# Its version (6.1.192-3), which the headers, kbuild and source packages
# the arm64 guest's i2c-stub is built from must have too.
kpkg_version=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$kpkg$pkg_arch" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)

# fetch NAME [VERSION [ARCH]]: sets deb to NAME's .deb in the cache,
# downloading it unless a version of it (or that version) is there already.
mkdir -p "$debs"
fetch() {
	local name=$1 version=${2:-} darch=${3:-}
	local spec=$name${darch:+:$darch}${version:+=$version}
	local glob=${name}_${version:-*}_${darch:-*}.deb
	deb=$(find "$debs" -maxdepth 1 -name "$glob" | sort | tail -n 1)
	[ -z "$deb" ] || return 0
	say "apt-get download $spec"
	local opts=("${apt_opts[@]}")
	[ "$(id -u)" -ne 0 ] || opts+=(-o APT::Sandbox::User=root)
	download() { (cd "$debs" && apt-get "${opts[@]}" download -qq "$spec"); }
	download || { guest_apt_update && download; } || skip "apt-get download $spec failed"
	deb=$(find "$debs" -maxdepth 1 -name "$glob" | sort | tail -n 1)
	[ -n "$deb" ] || die "apt-get download $spec left no .deb in $debs"
}
# A kernel of an older ABI is of no more use: do not let them pile up.
find "$debs" -maxdepth 1 -name 'linux-image-*.deb' ! -name "${kpkg}_*" -delete
if [ "$arch" = amd64 ]; then
	fetch "$kpkg"
	kdeb=$deb
	fetch busybox-static
	bbdeb=$deb
	host_bbdeb=$deb
else
	fetch "$kpkg" "$kpkg_version" "$arch"
	kdeb=$deb
	# busybox for the guest, and the host's own for packing the cpio
	# archive (the arm64 one does not run here).
	fetch busybox-static "" "$arch"
	bbdeb=$deb
	fetch busybox-static "" amd64
	host_bbdeb=$deb
fi
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
dpkg-deb -x "$host_bbdeb" "$work/host-busybox"
vmlinuz=$work/kernel/boot/vmlinuz-$kver
config=$work/kernel/boot/config-$kver
moddir=$work/kernel/lib/modules/$kver
if [ ! -f "$vmlinuz" ] || [ ! -f "$config" ] || [ ! -d "$moddir/kernel" ]; then
	die "$kpkg has no vmlinuz, config or modules for $kver"
fi
# qemu-system-aarch64 -kernel boots an arm64 Image (Debian 12's vmlinuz:
# uncompressed, with the magic "ARM\x64" at byte 56), not a compressed one.
if [ "$arch" = arm64 ] && [ "$(dd if="$vmlinuz" bs=1 skip=56 count=4 2>/dev/null)" != "ARM"$'\x64' ]; then
	die "$vmlinuz is not an uncompressed arm64 Image (no ARM\\x64 magic at byte 56)"
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

# build_modules MODULE...: builds each MODULE.ko for this kernel into
# $work/built, out of tree, the way Debian builds third-party modules
# (dkms): the kernel's headers package (its .config, Module.symvers for the
# symbol CRCs, generated headers), the common headers, the kbuild tools
# (amd64 binaries: modpost, fixdep), and the kernel's own compiler. The
# sources: i2c-stub.c is drivers/i2c/i2c-stub.c of linux-source of the
# kernel's version (only that file is kept, in the cache); any other
# MODULE.c is beside this script. Only for the arm64 guest.
d_modules=0.0
build_modules() {
	local t=$EPOCHREALTIME
	[ "$arch" = arm64 ] || die "this script builds kernel modules ($*) only for arm64"
	[ -n "$kpkg_version" ] || die "no version known for $kpkg"
	say "building kernel modules for $kver: $*"

	# The compiler the kernel was built with (CONFIG_CC_VERSION_TEXT, such
	# as "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"): its major version,
	# which the headers' Makefile calls as $(CROSS_COMPILE)gcc-12.
	local gcc_major
	gcc_major=$(config_value CONFIG_CC_VERSION_TEXT | sed -n 's/^"gcc-\([0-9][0-9]*\) .*/\1/p')
	[ -n "$gcc_major" ] || die "$kpkg was not built by a gcc-N: $(config_value CONFIG_CC_VERSION_TEXT)"
	host_tool "aarch64-linux-gnu-gcc-$gcc_major" "gcc-$gcc_major-aarch64-linux-gnu"
	host_tool make make

	local series abi
	series=$(sed -n 's/^\([0-9][0-9]*\.[0-9][0-9]*\)\..*/\1/p' <<<"$kver") # 6.1
	abi=${kver%-"$arch"}                                                # 6.1.0-57
	# Headers and kbuild of another version are of no more use.
	find "$debs" -maxdepth 1 \( -name 'linux-headers-*.deb' -o -name 'linux-kbuild-*.deb' \) \
		! -name "*_${kpkg_version}_*" -delete
	local inputs=()
	fetch "linux-headers-$kver" "$kpkg_version" "$arch"
	inputs+=("$deb")
	fetch "linux-headers-$abi-common" "$kpkg_version" all
	inputs+=("$deb")
	fetch "linux-kbuild-$series" "$kpkg_version" amd64
	inputs+=("$deb")

	local kb=$work/kbuild out=$work/built mod src
	mkdir -p "$kb" "$out"
	for mod in "$@"; do
		if [ "$mod" != i2c-stub ]; then
			cp "$here/$mod.c" "$out/"
			echo "obj-m += $mod.o" >>"$out/Kbuild"
			continue
		fi
		# Only one file of the 139 MB linux-source package is needed: keep
		# that file, not the package.
		src=$cache/$arch/i2c-stub-$kpkg_version.c
		find "$cache/$arch" -maxdepth 1 -name 'i2c-stub-*.c' ! -name "${src##*/}" -delete
		if [ ! -s "$src" ]; then
			fetch "linux-source-$series" "$kpkg_version" all
			say "extracting drivers/i2c/i2c-stub.c from ${deb##*/}"
			dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./usr/src/linux-source-$series.tar.xz" | xz -dc |
				tar -xOf - "linux-source-$series/drivers/i2c/i2c-stub.c" >"$src.new" ||
				die "no drivers/i2c/i2c-stub.c in ${deb##*/}"
			mv "$src.new" "$src"
			rm -f "$deb"
		fi
		cp "$src" "$out/i2c-stub.c"
		echo "obj-m += i2c-stub.o" >>"$out/Kbuild"
	done

	for deb in "${inputs[@]}"; do dpkg-deb -x "$deb" "$kb"; done
	# The headers' Makefile includes the common one by its installed path,
	# /usr/src/linux-headers-ABI-common/Makefile; the scripts and tools
	# links are relative and lead to the kbuild package's.
	local hdr=$kb/usr/src/linux-headers-$kver
	if [ ! -f "$hdr/Makefile" ] || [ ! -f "$hdr/Module.symvers" ]; then
		die "linux-headers-$kver has no Makefile or Module.symvers"
	fi
	sed -i "s|/usr/src/|$kb/usr/src/|g" "$hdr/Makefile"
	if ! make -C "$hdr" M="$out" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$out/build.log" 2>&1; then
		cat "$out/build.log" >&2
		die "building $* for $kver failed (above)"
	fi
	grep -i 'warning:' "$out/build.log" >&2 || true
	# The kernel loads a module only if its vermagic (release, SMP,
	# preemption, modversions, architecture) is its own: compare with any
	# module of the kernel package.
	local want got f
	for f in "${ko_file[@]}"; do break; done
	want=$(ko_field "$f" vermagic)
	for mod in "$@"; do
		got=$(ko_field "$out/$mod.ko" vermagic)
		[ "$got" = "$want" ] || die "$mod.ko built has vermagic \"$got\", the kernel's modules \"$want\""
		ko_file[${mod//-/_}]=$out/$mod.ko
	done
	d_modules=$(since "$t")
	say "built $* in ${d_modules}s: vermagic $want"
}

root=$work/root
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,nvmem,opt,lib/modules}
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
# What to build: the modules of our own, and i2c-stub where the kernel
# lacks it. Built in one go, before any is added.
builtin_modules=""
built_modules=""
for entry in "${modules[@]}"; do
	read -r mod opt params <<<"$entry"
	if [ "$opt" = - ] || { [ "$mod" = i2c-stub ] && [ -z "$(config_value "$opt")" ]; }; then
		built_modules+=" $mod"
	fi
done
# shellcheck disable=SC2086 # one word a module
[ -z "$built_modules" ] || build_modules $built_modules
for entry in "${modules[@]}"; do
	read -r mod opt params <<<"$entry"
	case " $built_modules " in *" $mod "*)
		add_module "$mod" "$params"
		continue
		;;
	esac
	case $(config_value "$opt") in
	y) builtin_modules+=" $mod" ;;
	m) add_module "$mod" "$params" ;;
	*) die "$kpkg: $opt is not set: no $mod" ;;
	esac
done
printf '%s\n' "${load_order[@]}" >"$root/lib/modules/modules.load"

# The nvmemfs binaries, static, each in a folder of its own as
# /opt/LABEL/nvmemfs: init.sh puts one folder at a time first in PATH, so
# the checks call "nvmemfs" and find the server with "pidof nvmemfs"
# whichever binary runs. /etc/nvmemfs-binaries lists them in order.
: >"$root/etc/nvmemfs-binaries"
for b in "${binaries[@]}"; do
	read -r label goarch goarm <<<"$b"
	t=$EPOCHREALTIME
	mkdir -p "$root/opt/$label"
	(cd "$repo" && env CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" ${goarm:+GOARM="$goarm"} \
		go build -trimpath -o "$root/opt/$label/nvmemfs" .)
	say "built nvmemfs for $label (GOARCH=$goarch${goarm:+ GOARM=$goarm}, static) in $(since "$t")s"
	echo "$label /opt/$label GOARCH=$goarch${goarm:+ GOARM=$goarm}" >>"$root/etc/nvmemfs-binaries"
done

# busybox; init.sh makes the applets' links itself (the arm64 busybox
# cannot run here to list them), so /bin/sh is the only one needed.
install -m 0755 "$work/busybox/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init.sh" "$root/init"

# cpio "newc" is the only format the kernel unpacks; the host's busybox
# writes it, so the host needs no cpio package. /dev/console comes from the
# kernel's built-in initramfs, which ours is unpacked over.
(cd "$root" && find . | "$work/host-busybox/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$work/initramfs.gz"
d_build=$(since "$t_build")

## 3. Boot.
# amd64: KVM when /dev/kvm works, else TCG, which works everywhere and is
# fast enough here: the whole guest run takes seconds either way.
#
# A /dev/kvm that opens is not enough: under nested virtualisation it may
# refuse qemu's CPU models, or accept them and then spin forever in the
# guest's real-mode setup code. So first boot the kernel alone under KVM:
# without a root file system it must reach its panic (a few seconds even
# under TCG) and, with panic=-1 and -no-reboot, end qemu.
#
# arm64: TCG. KVM would need an arm64 host.
kvm_works() {
	local out
	out=$(timeout -k 5 20 "$qemu" -accel kvm -m 256 -nographic -no-reboot -nic none \
		-kernel "$vmlinuz" -append "console=$serial panic=-1 quiet" </dev/null 2>&1) || true
	grep -q 'Kernel panic' <<<"$out"
}
t_probe=$EPOCHREALTIME
case ${NVMEMFS_QEMU_ACCEL:-} in
kvm)
	[ "$arch" = amd64 ] || die "NVMEMFS_QEMU_ACCEL=kvm: an $arch guest cannot use KVM on an x86-64 host"
	accel=kvm
	;;
tcg) accel=tcg ;;
'')
	accel=tcg
	if [ "$arch" != amd64 ]; then
		say "an $arch guest on an x86-64 host: qemu emulates the CPU (TCG)"
	elif [ ! -e /dev/kvm ]; then
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
say "modules (load order): ${load_order[*]}${builtin_modules:+; built in:$builtin_modules}${built_modules:+; built here:$built_modules}"
say "nvmemfs binaries: $(cut -d' ' -f1 "$root/etc/nvmemfs-binaries" | tr '\n' ' ')"
say "initramfs $(($(stat -c %s "$work/initramfs.gz") / 1024)) KiB; booting $qemu${qemu_machine[*]:+ ${qemu_machine[*]}} with -accel $accel, timeout ${guest_timeout}s"
t_boot=$EPOCHREALTIME
qemu_rc=0
# -nographic: the serial port is the guest's console, on our stdout.
# -no-reboot with panic=-1: a guest that panics (its /init died) ends qemu
# at once instead of waiting for the timeout. -nic none: no network, and no
# network option ROM to load. sed drops the console's CRs and SeaBIOS's
# terminal resets, line by line (-u) so that the output shows as it comes.
timeout -k 10 "$guest_timeout" "$qemu" "${qemu_machine[@]}" -accel "$accel" -m 512 -smp 2 \
	-nographic -no-reboot -nic none \
	-kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
	-append "console=$serial panic=-1 quiet" \
	</dev/null 2>&1 | sed -u 's/\r$//; s/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g' | tee "$console" || qemu_rc=$?
d_boot=$(since "$t_boot")

echo
say "times ($arch guest): prerequisites ${d_prereq}s, unpack+build+initramfs ${d_build}s (of which kernel modules ${d_modules}s), KVM probe ${d_probe}s, boot+tests ${d_boot}s, total $(since "$t_all")s (console kept in $console)"
# The guest's own account of each binary's checks.
grep '^== .*: checks took' "$console" || true
if grep -q 'NVMEMFS-QEMU-RESULT: PASS' "$console"; then
	counts=""
	while read -r label _; do
		counts+=" $label $(grep -c "^PASS: \[$label\]" "$console" || true),"
	done <"$root/etc/nvmemfs-binaries"
	say "qemu integration test ($arch guest) PASSED ($(grep -c '^PASS:' "$console") checks:${counts%,})"
	exit 0
fi
if grep -q 'NVMEMFS-QEMU-RESULT: FAIL' "$console"; then
	grep '^FAIL:' "$console" >&2 || true
	die "the guest reported failures (above)"
fi
[ "$qemu_rc" -ne 124 ] || die "the guest gave no result within ${guest_timeout}s (NVMEMFS_QEMU_TIMEOUT)"
die "the guest stopped without a result (qemu exit status $qemu_rc): see the console above"
