//go:build !gc || nvmemfs_noprocpin

package nvcore

// slotHintKind names the slot hint this build uses.
const slotHintKind = "pool"

// Lock enters a read section. It never blocks.
func (s *SRCU) Lock() SRCUToken { return s.lockAt(poolSlotHint()) }

// slotHint is a number sync.Pool keeps per P, for toolchains without
// runtime.procPin (gccgo, a Go that withdraws it) and for builds with
// -tags nvmemfs_noprocpin.
func slotHint() int { return poolSlotHint() }
