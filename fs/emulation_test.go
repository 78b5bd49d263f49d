package fs

import (
	"os"
	"time"
)

// slack multiplies the time bounds of tests that time the machine: 1
// natively, 5 when the tests run under a user-mode emulator (qemu-user:
// .ci/emulated-tests sets NVMEMFS_EMULATED to its name). There every
// instruction is translated and the next package's build shares the two
// cores: an emulated arm64 Unregister that waits for one 3 ms chunk took
// 64 ms once. The bounds stay far below what they guard against (a removal
// waiting for a whole read, 256 chunks).
func slack() time.Duration {
	if os.Getenv("NVMEMFS_EMULATED") != "" {
		return 5
	}
	return 1
}
