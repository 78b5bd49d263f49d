//go:build !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le)

package mtd

// The ioctl direction bits of include/uapi/asm-generic/ioctl.h: 14 size
// bits, 2 direction bits, _IOC_WRITE 1, _IOC_READ 2. x86, ARM, arm64,
// RISC-V, LoongArch and s390 use them.
const (
	iocWrite    = 1
	iocRead     = 2
	iocDirShift = 30
)
