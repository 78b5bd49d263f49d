//go:build gc && !nvmemfs_noprocpin

package nvcore

import _ "unsafe" // for go:linkname

// procPin and procUnpin tell which P (the runtime's per-core scheduler
// slot) the goroutine runs on. The runtime keeps both for outside use
// (go.dev/issue/67401) on a list of symbols it allows go:linkname to; a Go
// that withdrew them would fail to link this file, and building with
// -tags nvmemfs_noprocpin selects srcu_nopin.go instead.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// slotHintKind names the slot hint this build uses.
const slotHintKind = "procpin"

// Lock enters a read section. It never blocks.
func (s *SRCU) Lock() SRCUToken {
	// The P is only an affinity hint: the goroutine may move to another
	// core before it counts, which costs a shared cache line now and then.
	p := procPin()
	procUnpin()
	return s.lockAt(p)
}

// slotHint is the P the goroutine runs on, as Lock finds it.
func slotHint() int {
	p := procPin()
	procUnpin()
	return p
}
