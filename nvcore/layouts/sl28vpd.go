package layouts

// The vital product data of Kontron's SMARC-sAL28 (sl28) boards (SPEC 5,
// sl28vpd), as the kernel's drivers/nvmem/layouts/sl28vpd.c reads it: 24
// bytes, 'V', version 1, a 15-byte serial number, the 6-byte base MAC
// address, and a CRC-8 of the 23 bytes before it.

import (
	"bytes"
	"fmt"
	"io"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

const (
	sl28LayoutName = "sl28vpd"
	sl28Len        = 24
	sl28Magic      = 'V'
	sl28Version    = 1
	sl28SerialOff  = 2
	sl28SerialLen  = 15
	sl28MACOff     = 17
	sl28MACLen     = 6
	sl28CRCOff     = 23
)

// sl28Error is an error of the sl28vpd layout. Its text is the message
// alone, starting with "sl28vpd: "; errors.Is matches it with
// nvcore.ErrInvalid.
type sl28Error struct{ msg string }

func (e *sl28Error) Error() string { return e.msg }
func (e *sl28Error) Unwrap() error { return nvcore.ErrInvalid }

func sl28Errorf(format string, a ...any) error {
	return &sl28Error{msg: "sl28vpd: " + fmt.Sprintf(format, a...)}
}

// sl28CRC8 is the CRC-8 the VPD carries: polynomial 0x07, initial value 0,
// most significant bit first, no reflection, no final XOR (the kernel's
// crc8_populate_msb(table, 0x07) and crc8(table, data, len, 0)).
func sl28CRC8(data []byte) byte {
	var crc byte
	for _, b := range data {
		crc ^= b
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SL28Info is the content of an sl28 VPD block.
type SL28Info struct {
	// Serial is the serial number field as stored: the kernel hands out all
	// 15 bytes, padding included. EncodeSL28VPD pads with NUL bytes.
	Serial [sl28SerialLen]byte
	// MAC is the base MAC address of the board's network ports.
	MAC [sl28MACLen]byte
}

// SerialString returns the serial number up to its first NUL byte, as a C
// reader of the field sees it.
func (v SL28Info) SerialString() string {
	s := v.Serial[:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// Encode returns the 24 bytes of the VPD block, with its CRC-8. It stores
// the fields as they are; EncodeSL28VPD checks them first.
func (v SL28Info) Encode() []byte {
	buf := make([]byte, 0, sl28Len)
	buf = append(buf, sl28Magic, sl28Version)
	buf = append(buf, v.Serial[:]...)
	buf = append(buf, v.MAC[:]...)
	return append(buf, sl28CRC8(buf))
}

// DecodeSL28VPD parses the VPD block at the start of data, which may run
// past its 24 bytes. It refuses, with an error matching nvcore.ErrInvalid,
// a missing 'V', a version other than 1, fewer than 24 bytes and a CRC-8
// mismatch. It does not judge the fields: a zero or multicast MAC address
// is refused when the base-mac-address cell is read, as the kernel does.
func DecodeSL28VPD(data []byte) (SL28Info, error) {
	var v SL28Info
	switch {
	case len(data) >= 1 && data[0] != sl28Magic:
		return v, sl28Errorf("no 'V' magic at offset 0")
	case len(data) >= 2 && data[1] != sl28Version:
		return v, sl28Errorf("version %d not supported", data[1])
	case len(data) < sl28Len:
		return v, sl28Errorf("the device has %d bytes, the VPD needs %d", len(data), sl28Len)
	}
	if stored, computed := data[sl28CRCOff], sl28CRC8(data[:sl28CRCOff]); stored != computed {
		return v, sl28Errorf("CRC-8 mismatch: stored 0x%02x, computed 0x%02x", stored, computed)
	}
	copy(v.Serial[:], data[sl28SerialOff:])
	copy(v.MAC[:], data[sl28MACOff:])
	return v, nil
}

// EncodeSL28VPD returns the 24-byte VPD block for a serial number and a
// base MAC address. The serial number is 1 to 15 characters of printable
// ASCII, padded to 15 bytes with NUL bytes (a C string in a char[15], the
// way the field is declared; the kernel does not trim the field, so a
// reader of the serial-number cell gets the padding too). The MAC address
// must be one the base-mac-address cell will give out: not all zeros and
// not multicast. Errors match nvcore.ErrInvalid.
func EncodeSL28VPD(serial string, mac [6]byte) ([]byte, error) {
	if len(serial) < 1 || len(serial) > sl28SerialLen {
		return nil, sl28Errorf("serial number %q: %d characters, want 1 to %d", serial, len(serial), sl28SerialLen)
	}
	for i := 0; i < len(serial); i++ {
		if serial[i] < 0x20 || serial[i] > 0x7e {
			return nil, sl28Errorf("serial number %q: byte 0x%02x at %d is not printable ASCII", serial, serial[i], i)
		}
	}
	if err := sl28CheckMAC(mac[:]); err != nil {
		return nil, err
	}
	var v SL28Info
	copy(v.Serial[:], serial)
	v.MAC = mac
	return v.Encode(), nil
}

// sl28CheckMAC refuses what the kernel's is_valid_ether_addr refuses: all
// zeros, and multicast addresses (the low bit of the first byte set, which
// includes broadcast).
func sl28CheckMAC(mac []byte) error {
	if len(mac) != sl28MACLen {
		return sl28Errorf("base-mac-address: %d bytes, want %d", len(mac), sl28MACLen)
	}
	text := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
	if bytes.Equal(mac, make([]byte, sl28MACLen)) {
		return sl28Errorf("base-mac-address %s is all zeros", text)
	}
	if mac[0]&1 != 0 {
		return sl28Errorf("base-mac-address %s is multicast (low bit of the first byte set)", text)
	}
	return nil
}

// sl28DecodeMAC is the base-mac-address cell's Decode: the 6 bytes, when
// they are a unicast address.
func sl28DecodeMAC(raw []byte) ([]byte, error) {
	if err := sl28CheckMAC(raw); err != nil {
		return nil, err
	}
	return bytes.Clone(raw), nil
}

// SL28Detect reports whether data, the first bytes of a device, holds an
// sl28 VPD block: 'V', version 1 and a matching CRC-8 in 24 bytes. The
// checksum makes the test worth trusting for choosing a layout; two bytes
// of signature alone would match too much.
func SL28Detect(data []byte) bool {
	return len(data) >= sl28Len && data[0] == sl28Magic && data[1] == sl28Version &&
		sl28CRC8(data[:sl28CRCOff]) == data[sl28CRCOff]
}

// SL28VPD is the sl28vpd layout: two cells, serial-number (offset 2, 15
// bytes, raw as the kernel gives it, padding included) and
// base-mac-address (offset 17, 6 bytes), whose reads fail with an error
// matching nvcore.ErrInvalid when the address is all zeros or multicast.
type SL28VPD struct{}

var _ nvcore.Layout = SL28VPD{}

// Name returns "sl28vpd".
func (SL28VPD) Name() string { return sl28LayoutName }

// Cells reads the first 24 bytes of the device and returns the two cells,
// or the error DecodeSL28VPD gives for them.
func (SL28VPD) Cells(r io.ReaderAt, size int64) ([]nvcore.CellInfo, error) {
	n := min(size, sl28Len)
	var data []byte
	if n > 0 {
		data = make([]byte, n)
		k, err := r.ReadAt(data, 0)
		if k != len(data) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("sl28vpd: reading bytes 0x0-0x%x: %w", n, err)
		}
	}
	if _, err := DecodeSL28VPD(data); err != nil {
		return nil, err
	}
	return []nvcore.CellInfo{
		{Name: "serial-number", Offset: sl28SerialOff, Bytes: sl28SerialLen, Layout: sl28LayoutName},
		{Name: "base-mac-address", Offset: sl28MACOff, Bytes: sl28MACLen, Layout: sl28LayoutName, Decode: sl28DecodeMAC},
	}, nil
}
