package nvcore

// Benchmarks of the read section every provider call runs in, each beside
// its baseline in the same run (DESIGN, "The read section's cost"):
//
//	go test -run '^$' -bench 'ReadSection|DeviceRead' -benchmem -cpu 1,2 -count 5 ./nvcore/
//	go test -tags nvmemfs_noprocpin -run '^$' -bench 'ReadSection|DeviceRead' -benchmem -cpu 1,2 -count 5 ./nvcore/
//
// docs/PERFORMANCE.md gives the figures and what they mean.

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// BenchmarkReadSection measures one empty read section: enter, then leave.
// Every goroutine of b.RunParallel (one per -cpu) loops on the same domain,
// as concurrent readers of one device do, so -cpu 1,2 shows whether readers
// on two cores slow each other down.
//
//   - srcu: SRCU.Lock and SRCU.Unlock, the guard of every provider call,
//     with this build's slot hint (procPin, or the pool with -tags
//     nvmemfs_noprocpin or another toolchain).
//   - srcu-pool: the same section with the sync.Pool slot hint, the
//     fallback, measured in the same run as procPin.
//   - rwmutex: sync.RWMutex RLock and RUnlock, the obvious alternative.
//   - atomic: one shared atomic.Int64, Add(1) then Add(-1): the least a
//     counting guard on a single cache line can cost, and the line every
//     core fights over.
func BenchmarkReadSection(b *testing.B) {
	b.Run("srcu", func(b *testing.B) {
		s := NewSRCU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t := s.Lock()
				s.Unlock(t)
			}
		})
	})
	b.Run("srcu-pool", func(b *testing.B) {
		s := NewSRCU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t := s.lockAt(poolSlotHint())
				s.Unlock(t)
			}
		})
	})
	b.Run("rwmutex", func(b *testing.B) {
		var mu sync.RWMutex
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.RLock()
				//lint:ignore SA2001 the empty section is what is measured, as for srcu
				mu.RUnlock()
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Add(1)
				n.Add(-1)
			}
		})
	})
}

// BenchmarkDeviceRead measures a 6-byte read (a MAC address) from one
// goroutine: through Device.ReadAt, which checks the request and runs the
// provider call in a read section, and straight from the same provider, the
// baseline without the core. The difference is what the core adds to a read.
func BenchmarkDeviceRead(b *testing.B) {
	data := make([]byte, 256)
	for i := range data {
		data[i] = byte(i * 7)
	}
	mem := nvcoretest.NewMemory(data)
	reg := NewRegistry()
	d, err := reg.Register(Config{Name: "bench"}, mem)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := reg.Remove(d); err != nil {
			b.Errorf("remove: %v", err)
		}
	})
	const off = 0xfa
	buf := make([]byte, 6)

	b.Run("device", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, err := d.ReadAt(buf, off); n != len(buf) || err != nil {
				b.Fatalf("device read: %d, %v", n, err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, err := mem.ReadAt(buf, off); n != len(buf) || err != nil {
				b.Fatalf("direct read: %d, %v", n, err)
			}
		}
	})
}
