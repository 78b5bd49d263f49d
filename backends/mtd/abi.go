package mtd

// The kernel's user-space ABI for /dev/mtdN (include/uapi/mtd/mtd-abi.h):
// the two structures this package passes to ioctls, and the ioctl numbers,
// written here from the header. abi_test.go checks the layouts for the
// pointer size of the build against gcc's for the kernel's header, and the
// numbers against both gcc's and golang.org/x/sys/unix's for every port.
//
// Neither structure holds a pointer or a field wider than 4 bytes but
// mtd_info_user's trailing padding, which sits at offset 24 on every
// port: so both have the same layout on 32-bit and 64-bit targets, and the
// kernel needs no compat translation for them.

import "unsafe"

// mtdInfoUser is struct mtd_info_user, what MEMGETINFO fills:
//
//	struct mtd_info_user {
//		__u8 type; __u32 flags; __u32 size; __u32 erasesize;
//		__u32 writesize; __u32 oobsize; __u64 padding;
//	};
//
// 32 bytes; flags at 4 (three bytes of padding after type), padding at 24.
// size is 32 bits: MEMGETINFO cannot describe a device of 4 GiB or more.
type mtdInfoUser struct {
	typ       uint8
	flags     uint32
	size      uint32
	erasesize uint32
	writesize uint32
	oobsize   uint32
	padding   uint64
}

// eraseInfoUser is struct erase_info_user, the argument of MEMERASE,
// MEMLOCK, MEMUNLOCK and MEMISLOCKED:
//
//	struct erase_info_user { __u32 start; __u32 length; };
type eraseInfoUser struct {
	start  uint32
	length uint32
}

// The ioctl numbers, encoded as the kernel's _IOR and _IOW encode them
// (include/uapi/asm-generic/ioctl.h; MIPS and PowerPC use 13 size bits and
// 3 direction bits with other direction values, see ioc_2dirbits.go and ioc_3dirbits.go):
//
//	#define MEMGETINFO  _IOR('M', 1, struct mtd_info_user)
//	#define MEMERASE    _IOW('M', 2, struct erase_info_user)
//	#define MEMLOCK     _IOW('M', 5, struct erase_info_user)
//	#define MEMUNLOCK   _IOW('M', 6, struct erase_info_user)
//	#define MEMISLOCKED _IOR('M', 23, struct erase_info_user)
//
// MEMISLOCKED returns the answer as the ioctl's result: 1 locked, 0 not.
const (
	iocTypeMTD   = 'M'
	iocSizeShift = 16

	memGetInfo  = iocRead<<iocDirShift | unsafe.Sizeof(mtdInfoUser{})<<iocSizeShift | iocTypeMTD<<8 | 1
	memErase    = iocWrite<<iocDirShift | unsafe.Sizeof(eraseInfoUser{})<<iocSizeShift | iocTypeMTD<<8 | 2
	memLock     = iocWrite<<iocDirShift | unsafe.Sizeof(eraseInfoUser{})<<iocSizeShift | iocTypeMTD<<8 | 5
	memUnlock   = iocWrite<<iocDirShift | unsafe.Sizeof(eraseInfoUser{})<<iocSizeShift | iocTypeMTD<<8 | 6
	memIsLocked = iocRead<<iocDirShift | unsafe.Sizeof(eraseInfoUser{})<<iocSizeShift | iocTypeMTD<<8 | 23
)

// info turns what MEMGETINFO filled into an Info.
func (m *mtdInfoUser) info(name string) Info {
	return Info{
		Name:      name,
		Type:      m.typ,
		Flags:     m.flags,
		Size:      int64(m.size),
		EraseSize: int(m.erasesize),
		WriteSize: int(m.writesize),
		OOBSize:   int(m.oobsize),
	}
}
