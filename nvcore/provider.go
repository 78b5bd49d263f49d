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
type TransferSizer interface {
	TransferSize() int
}

// Syncer is implemented by providers that buffer writes: Sync makes every
// write that has returned durable.
type Syncer interface {
	Sync() error
}

// defaultTransferSize bounds a read section for providers that state no
// transfer size of their own.
const defaultTransferSize = 64 << 10
