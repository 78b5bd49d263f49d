package nvcore

// Provider is the back end of a device: the memory itself. The core calls it
// only inside a read section of the device's SRCU domain, and never again
// once Close has been called.
//
// A provider that can be read implements io.ReaderAt; one that can be
// written implements io.WriterAt. Both follow the io contracts: a transfer
// shorter than asked comes with an error. A provider with neither is refused.
type Provider interface {
	// Size is the size of the memory in bytes. It must not change.
	Size() int64
	// Close releases the hardware or file. It is called once, after every
	// call in flight has returned.
	Close() error
}

// TransferSizer is implemented by providers whose transfers should be cut
// into chunks: an I2C EEPROM reads at most 128 bytes per transaction. Each
// chunk runs in its own read section, so removal waits for one chunk at most.
// Chunks are aligned to multiples of the size.
type TransferSizer interface {
	TransferSize() int
}

// WriteTransferSizer is implemented by providers whose writes go in smaller
// pieces than their reads: an I2C EEPROM writes a page at a time and then
// waits out a write cycle of several milliseconds. Writes are cut into
// chunks of this size, aligned to it, each in its own read section.
type WriteTransferSizer interface {
	WriteTransferSize() int
}

// Exclusive is implemented by providers that serve one call at a time,
// such as an EEPROM behind one I2C bus. The core then queues callers before
// their read section, not inside it, so that a removal waits for the one
// transfer under way and not for every caller queued behind it.
type Exclusive interface {
	Exclusive()
}

// GoneNotifier is implemented by providers that learn by themselves that
// their hardware went away (a kernel device that vanished from sysfs). The
// registry calls NotifyGone once, at registration; the provider calls gone
// (from any goroutine, at most once, never inside one of its own callbacks)
// and the device is then removed as by Unregister (DESIGN rule 7).
type GoneNotifier interface {
	NotifyGone(gone func())
}

// GoneChecker is implemented by providers that can tell, when asked,
// whether their hardware is still the one they opened (a block device's
// medium swapped under the same numbers, which the provider's own poll
// notices only at its next tick). Device.CheckHardware asks it.
type GoneChecker interface {
	HardwareGone() bool
}

// MediumIdentifier is implemented by providers of removable media: MediumID
// names the medium they opened (a block device's diskseq, which the kernel
// never gives twice), or "" when the kernel does not say. The core asks
// once, at registration.
type MediumIdentifier interface {
	MediumID() string
}

// CellReader is implemented by providers that read some cells themselves:
// a mirror of the kernel's sysfs cells, whose bit fields and decoding the
// kernel applies. The core calls ReadCell inside a read section for every
// cell whose CellInfo.Provided is set.
type CellReader interface {
	ReadCell(ci CellInfo) ([]byte, error)
}

// Syncer is implemented by providers that buffer writes: Sync makes every
// write that has returned durable.
type Syncer interface {
	Sync() error
}

// defaultTransferSize bounds a read section for providers that state no
// transfer size of their own.
const defaultTransferSize = 64 << 10

// WriteProtect is a device's write-protect line (SPEC 3): asserted from
// registration on, deasserted only around each provider write. A line that
// cannot be deasserted fails the write before the provider is called; one
// that cannot be asserted again fails the write after it.
type WriteProtect interface {
	// Protect asserts the line: the memory refuses writes.
	Protect() error
	// Unprotect deasserts the line: the memory accepts writes.
	Unprotect() error
}
