//go:build mips || mipsle || mips64 || mips64le || ppc64 || ppc64le

package mtd

// The ioctl direction bits of arch/mips/include/uapi/asm/ioctl.h (and
// arch/powerpc's, which are the same): 13 size bits, 3 direction bits,
// _IOC_NONE 1, _IOC_READ 2, _IOC_WRITE 4.
const (
	iocWrite    = 4
	iocRead     = 2
	iocDirShift = 29
)
