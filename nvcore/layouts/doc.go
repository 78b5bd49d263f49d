// Package layouts turns the bytes of well-known formats into cells, as the
// kernel's nvmem layouts do (SPEC 5), and edits them keeping every checksum
// valid: ONIE TlvInfo EEPROMs, U-Boot environments (single and redundant),
// and Kontron sl28 VPD blocks. It also recognises them by signature and
// checksum (Auto).
//
// Every parser takes bytes from a device, which may hold anything: none
// panics, loops, or allocates more than a small multiple of its input, and
// each has a fuzz target.
package layouts
