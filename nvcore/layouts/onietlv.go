package layouts

// The ONIE TlvInfo EEPROM format (SPEC 5, onie-tlv), as the ONIE project
// specifies it and as the kernel's drivers/nvmem/layouts/onie-tlv.c reads
// it: the 8-byte id "TlvInfo\0", a version byte (1), a big-endian total
// length of the TLV area that follows, TLVs of type, length and value, and
// last a CRC-32 TLV (FE 04 and the big-endian CRC-32 of every byte before
// the CRC value). Header and TLVs together hold at most 2048 bytes.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The TLV type codes of the ONIE specification.
const (
	TLVProductName     byte = 0x21 // ASCII string
	TLVPartNumber      byte = 0x22 // ASCII string
	TLVSerialNumber    byte = 0x23 // ASCII string
	TLVMACAddress      byte = 0x24 // 6 bytes: the base MAC address
	TLVManufactureDate byte = 0x25 // 19 ASCII characters: MM/DD/YYYY hh:mm:ss
	TLVDeviceVersion   byte = 0x26 // 1 byte
	TLVLabelRevision   byte = 0x27 // ASCII string
	TLVPlatformName    byte = 0x28 // ASCII string
	TLVONIEVersion     byte = 0x29 // ASCII string
	TLVNumMACs         byte = 0x2a // 2 bytes, big-endian
	TLVManufacturer    byte = 0x2b // ASCII string
	TLVCountryCode     byte = 0x2c // 2 ASCII characters (ISO 3166-1 alpha-2)
	TLVVendor          byte = 0x2d // ASCII string
	TLVDiagVersion     byte = 0x2e // ASCII string
	TLVServiceTag      byte = 0x2f // ASCII string
	TLVVendorExtension byte = 0xfd // bytes: an IANA enterprise number, then the vendor's data
	TLVCRC32           byte = 0xfe // 4 bytes, big-endian; always the last TLV
)

const (
	onieLayoutName = "onie-tlv"
	onieID         = "TlvInfo\x00"
	onieHdrLen     = 11   // id, version, total length
	onieMaxLen     = 2048 // header and TLVs, CRC-32 TLV included
	onieCRCTLVLen  = 6    // FE 04 and 4 bytes
	onieVersion    = 1
	onieMaxValue   = 255
)

// onieKind is how a type's value is stored, parsed and shown.
type onieKind int

const (
	onieBytes   onieKind = iota // opaque bytes: vendor extensions and unknown types
	onieString                  // printable ASCII, 1 to 255 bytes
	onieMAC                     // 6 bytes
	onieDate                    // MM/DD/YYYY hh:mm:ss
	onieU8                      // 1 byte
	onieU16                     // 2 bytes, big-endian
	onieCountry                 // 2 capital letters
	onieCRC                     // 4 bytes, big-endian
)

// onieType describes one known type code: its cell name (the kernel's) and
// its name in onie-syseeprom's listing.
type onieType struct {
	code    byte
	name    string
	display string
	kind    onieKind
}

var onieTypes = [...]onieType{
	{TLVProductName, "product-name", "Product Name", onieString},
	{TLVPartNumber, "part-number", "Part Number", onieString},
	{TLVSerialNumber, "serial-number", "Serial Number", onieString},
	{TLVMACAddress, "mac-address", "Base MAC Address", onieMAC},
	{TLVManufactureDate, "manufacture-date", "Manufacture Date", onieDate},
	{TLVDeviceVersion, "device-version", "Device Version", onieU8},
	{TLVLabelRevision, "label-revision", "Label Revision", onieString},
	{TLVPlatformName, "platform-name", "Platform Name", onieString},
	{TLVONIEVersion, "onie-version", "ONIE Version", onieString},
	{TLVNumMACs, "num-macs", "MAC Addresses", onieU16},
	{TLVManufacturer, "manufacturer", "Manufacturer", onieString},
	{TLVCountryCode, "country-code", "Country Code", onieCountry},
	{TLVVendor, "vendor", "Vendor Name", onieString},
	{TLVDiagVersion, "diag-version", "Diag Version", onieString},
	{TLVServiceTag, "service-tag", "Service Tag", onieString},
	{TLVVendorExtension, "vendor-extension", "Vendor Extension", onieBytes},
	{TLVCRC32, "crc32", "CRC-32", onieCRC},
}

func onieTypeOf(code byte) (onieType, bool) {
	for _, t := range onieTypes {
		if t.code == code {
			return t, true
		}
	}
	return onieType{code: code, display: "Unknown", kind: onieBytes}, false
}

// onieReserved reports whether code is one of the two codes the
// specification reserves (0x00 and 0xFF: what blank or erased memory reads).
func onieReserved(code byte) bool { return code == 0x00 || code == 0xff }

// onieLabel names a code in messages: "serial-number (0x23)", or "0x42".
func onieLabel(code byte) string {
	if t, ok := onieTypeOf(code); ok {
		return fmt.Sprintf("%s (0x%02x)", t.name, code)
	}
	return fmt.Sprintf("TLV 0x%02x", code)
}

// onieError is an error of the onie-tlv layout: about the content of a
// device, or about a value given to Set. Its text is the message alone,
// starting with "onie-tlv: "; errors.Is matches it with nvcore.ErrInvalid.
type onieError struct {
	msg string
	// invalidAt, when not zero, is the offset of a TLV whose type is
	// reserved, which onie-syseeprom reports in words of its own.
	invalidAt int
}

func (e *onieError) Error() string { return e.msg }
func (e *onieError) Unwrap() error { return nvcore.ErrInvalid }

func onieErrorf(format string, a ...any) error {
	return &onieError{msg: "onie-tlv: " + fmt.Sprintf(format, a...)}
}

// TLV is one type-length-value field of a TlvInfo EEPROM.
type TLV struct {
	// Code is the type code, such as TLVSerialNumber.
	Code byte
	// Value holds the stored bytes, at most 255.
	Value []byte
	// Offset is where the value sits in the image. DecodeTLVInfo sets it,
	// and Set and Delete keep it up to date for the image Encode will
	// produce; Encode ignores it.
	Offset int64
}

// TLVInfo is the content of a TlvInfo EEPROM.
type TLVInfo struct {
	// Version is the header's version byte. Only 1 exists; Encode writes 1
	// for 0 as well, so that a zero TLVInfo encodes.
	Version byte
	// TLVs are the fields in stored order, without the CRC-32 TLV, which
	// Encode computes and always writes last.
	TLVs []TLV
}

// TLVCheck is what DecodeTLVInfoLenient found out about the checksum of a
// TlvInfo image.
type TLVCheck struct {
	// TotalLength is the header's total length field: the bytes that follow
	// the 11-byte header, the CRC-32 TLV included.
	TotalLength int
	// HasCRC reports whether the TLV area ends with a CRC-32 TLV (FE 04).
	HasCRC bool
	// Stored is the CRC-32 the image carries; Computed is the CRC-32 of
	// every byte from offset 0 through the CRC TLV's FE 04. Both are zero
	// when HasCRC is false.
	Stored, Computed uint32

	// What sits where the CRC-32 TLV should, when it is not there.
	foundCode, foundLen byte
}

// Valid reports whether the image ends with a CRC-32 TLV that matches it.
func (c TLVCheck) Valid() bool { return c.HasCRC && c.Stored == c.Computed }

// Err returns nil when the checksum is valid, or the error DecodeTLVInfo
// gives for it: a missing CRC-32 TLV or a CRC mismatch.
func (c TLVCheck) Err() error {
	switch {
	case c.Valid():
		return nil
	case c.TotalLength < onieCRCTLVLen:
		return onieErrorf("no CRC-32 TLV: total length %d is shorter than its %d bytes", c.TotalLength, onieCRCTLVLen)
	case !c.HasCRC:
		return onieErrorf("no CRC-32 TLV at the end of the TLV area: found %02x %02x at 0x%x, want fe 04",
			c.foundCode, c.foundLen, onieHdrLen+c.TotalLength-onieCRCTLVLen)
	default:
		return onieErrorf("CRC mismatch: stored 0x%08x, computed 0x%08x", c.Stored, c.Computed)
	}
}

// onieHeader is the part of the 11-byte header that varies.
type onieHeader struct {
	version byte
	total   int
}

// end is the offset just past the TLV area.
func (h onieHeader) end() int { return onieHdrLen + h.total }

// onieParseHeader checks the 11-byte header at the start of data: the id,
// the version and whether the total length fits the 2048 bytes. It looks at
// no byte past the header.
func onieParseHeader(data []byte) (onieHeader, error) {
	if len(data) < len(onieID) || string(data[:len(onieID)]) != onieID {
		return onieHeader{}, onieErrorf("no TlvInfo header at offset 0")
	}
	if len(data) < onieHdrLen {
		return onieHeader{}, onieErrorf("TlvInfo header cut short: the device has %d bytes, the header needs %d", len(data), onieHdrLen)
	}
	h := onieHeader{version: data[8], total: int(binary.BigEndian.Uint16(data[9:onieHdrLen]))}
	if h.version != onieVersion {
		return h, onieErrorf("version %d not supported (want %d)", h.version, onieVersion)
	}
	if h.end() > onieMaxLen {
		return h, onieErrorf("total length %d does not fit: %d + %d = %d bytes, more than %d",
			h.total, onieHdrLen, h.total, h.end(), onieMaxLen)
	}
	return h, nil
}

// onieParseHeaderData is onieParseHeader, and checks that data holds the
// whole TLV area the header announces.
func onieParseHeaderData(data []byte) (onieHeader, error) {
	h, err := onieParseHeader(data)
	if err != nil {
		return h, err
	}
	if len(data) < h.end() {
		return h, onieErrorf("total length %d needs %d bytes, the device has only %d", h.total, h.end(), len(data))
	}
	return h, nil
}

// onieCheckCRC looks for the CRC-32 TLV where the specification puts it,
// the last 6 bytes of the TLV area, and checks it. data holds the whole
// area.
func onieCheckCRC(data []byte, h onieHeader) TLVCheck {
	c := TLVCheck{TotalLength: h.total}
	if h.total < onieCRCTLVLen {
		return c
	}
	at := h.end() - onieCRCTLVLen
	if data[at] != TLVCRC32 || data[at+1] != 4 {
		c.foundCode, c.foundLen = data[at], data[at+1]
		return c
	}
	c.HasCRC = true
	c.Stored = binary.BigEndian.Uint32(data[at+2 : h.end()])
	c.Computed = crc32.ChecksumIEEE(data[:at+2])
	return c
}

// onieWalk reads the TLVs from offset 11 up to the CRC-32 TLV, or up to the
// end of the TLV area when it has none. It stops at the first field that
// breaks the structure and returns the fields before it with the error.
// Every step moves at least 2 bytes forward, so the walk ends.
func onieWalk(data []byte, h onieHeader, hasCRC bool) ([]TLV, error) {
	end := h.end()
	limit := end
	if hasCRC {
		limit = end - onieCRCTLVLen
	}
	var tlvs []TLV
	off := onieHdrLen
	for off < limit {
		code := data[off]
		if onieReserved(code) {
			return tlvs, &onieError{
				msg:       fmt.Sprintf("onie-tlv: invalid TLV field starting at EEPROM offset 0x%x: type 0x%02x is reserved", off, code),
				invalidAt: off,
			}
		}
		if off+2 > limit {
			if hasCRC {
				return tlvs, onieErrorf("TLV 0x%02x at 0x%x: its length byte is inside the CRC-32 TLV at 0x%x", code, off, limit)
			}
			return tlvs, onieErrorf("TLV 0x%02x at 0x%x: its length byte is past the end of the TLV area (0x%x)", code, off, end)
		}
		n := int(data[off+1])
		if code == TLVCRC32 {
			return tlvs, onieErrorf("CRC-32 TLV at 0x%x is not the last TLV (the TLV area ends at 0x%x)", off, end)
		}
		valueEnd := off + 2 + n
		if valueEnd > end {
			return tlvs, onieErrorf("TLV 0x%02x at 0x%x: length %d runs past the end of the TLV area (0x%x)", code, off, n, end)
		}
		if valueEnd > limit {
			return tlvs, onieErrorf("TLV 0x%02x at 0x%x: length %d runs into the CRC-32 TLV at 0x%x", code, off, n, limit)
		}
		tlvs = append(tlvs, TLV{Code: code, Value: bytes.Clone(data[off+2 : valueEnd]), Offset: int64(off + 2)})
		off = valueEnd
	}
	return tlvs, nil
}

// DecodeTLVInfo parses a TlvInfo image. data is the start of the device: it
// may run past the TLV area (the rest is ignored) and may stop short of it
// only when the device does, which is an error.
//
// It refuses, with an error matching nvcore.ErrInvalid that says what and
// where: a missing or wrong id, a version other than 1, a total length that
// does not fit the 2048 bytes or the device, a missing CRC-32 TLV, a CRC
// mismatch, a TLV that runs past the TLV area or into the CRC-32 TLV, a
// CRC-32 TLV that is not the last one, and the reserved types 0x00 and 0xFF
// (erased memory). The checksum is checked before the fields: a damaged
// image reports a CRC mismatch, not the symptom the damage caused. Unknown
// types are kept as they are.
func DecodeTLVInfo(data []byte) (*TLVInfo, error) {
	h, err := onieParseHeaderData(data)
	if err != nil {
		return nil, err
	}
	c := onieCheckCRC(data, h)
	if err := c.Err(); err != nil {
		return nil, err
	}
	tlvs, err := onieWalk(data, h, true)
	if err != nil {
		return nil, err
	}
	return &TLVInfo{Version: h.version, TLVs: tlvs}, nil
}

// DecodeTLVInfoLenient parses a TlvInfo image whatever its checksum, for
// showing a damaged EEPROM and for repairing one. It returns an error only
// when the structure itself cannot be read (the header, or a TLV that runs
// past its area); a missing or wrong CRC is reported in the TLVCheck alone,
// whose Err method gives the error DecodeTLVInfo would.
func DecodeTLVInfoLenient(data []byte) (*TLVInfo, TLVCheck, error) {
	h, err := onieParseHeaderData(data)
	if err != nil {
		return nil, TLVCheck{}, err
	}
	c := onieCheckCRC(data, h)
	tlvs, err := onieWalk(data, h, c.HasCRC)
	if err != nil {
		return nil, c, err
	}
	return &TLVInfo{Version: h.version, TLVs: tlvs}, c, nil
}

// onieEncodedLen is the size of the image Encode makes of tlvs.
func onieEncodedLen(tlvs []TLV) int {
	n := onieHdrLen + onieCRCTLVLen
	for _, v := range tlvs {
		n += 2 + len(v.Value)
	}
	return n
}

// Encode returns the image of t: the header, the TLVs in order, and the
// CRC-32 TLV, nothing after it; byte for byte what ONIE's onie-syseeprom
// and U-Boot's tlv_eeprom write for the same fields. It refuses a value
// longer than 255 bytes, a CRC-32 TLV or a reserved type among the TLVs, a
// version other than 1, and an image over 2048 bytes.
func (t *TLVInfo) Encode() ([]byte, error) {
	if t.Version != 0 && t.Version != onieVersion {
		return nil, onieErrorf("version %d not supported (want %d)", t.Version, onieVersion)
	}
	for i, v := range t.TLVs {
		switch {
		case onieReserved(v.Code):
			return nil, onieErrorf("TLV %d: type 0x%02x is reserved", i+1, v.Code)
		case v.Code == TLVCRC32:
			return nil, onieErrorf("TLV %d: the CRC-32 TLV is not stored in TLVs: Encode adds it", i+1)
		case len(v.Value) > onieMaxValue:
			return nil, onieErrorf("TLV %d, %s: %d bytes, a value holds at most %d", i+1, onieLabel(v.Code), len(v.Value), onieMaxValue)
		}
	}
	size := onieEncodedLen(t.TLVs)
	if size > onieMaxLen {
		return nil, onieErrorf("the image would be %d bytes, more than the %d a TlvInfo EEPROM holds", size, onieMaxLen)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, onieID...)
	buf = append(buf, onieVersion)
	buf = binary.BigEndian.AppendUint16(buf, uint16(size-onieHdrLen))
	for _, v := range t.TLVs {
		buf = append(buf, v.Code, byte(len(v.Value)))
		buf = append(buf, v.Value...)
	}
	buf = append(buf, TLVCRC32, 4)
	buf = binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	return buf, nil
}

// onieRelayout sets the offsets to where Encode will put the values.
func (t *TLVInfo) onieRelayout() {
	off := int64(onieHdrLen)
	for i := range t.TLVs {
		t.TLVs[i].Offset = off + 2
		off += 2 + int64(len(t.TLVs[i].Value))
	}
}

// Get returns the first TLV of the code, with a copy of its value.
func (t *TLVInfo) Get(code byte) (TLV, bool) {
	for _, v := range t.TLVs {
		if v.Code == code {
			v.Value = bytes.Clone(v.Value)
			return v, true
		}
	}
	return TLV{}, false
}

// Set parses value in the text form onie-syseeprom takes and stores it: in
// place of the first TLV of the code, keeping the order, or else after the
// last TLV. Other TLVs of the code stay (vendor-extension may repeat).
//
// The forms, by type (the lengths are the ONIE specification's):
//   - product-name, part-number, serial-number, label-revision,
//     platform-name, onie-version, manufacturer, vendor, diag-version,
//     service-tag: printable ASCII, 1 to 255 characters, stored as given.
//   - manufacture-date: "MM/DD/YYYY hh:mm:ss", exactly 19 characters, a
//     date that exists and a time from 00:00:00 to 23:59:59.
//   - country-code: two capital letters (ISO 3166-1 alpha-2), such as "TW".
//   - mac-address: "xx:xx:xx:xx:xx:xx" in hex of either case, 6 bytes; not
//     all zeros and not multicast, as onie-syseeprom demands.
//   - device-version: 0 to 255; num-macs: 1 to 65535, stored as 2 bytes
//     big-endian. Decimal, or hex after 0x. A leading 0 is decimal, never
//     octal (onie-syseeprom would read 010 as 8; we read 10).
//   - vendor-extension, and any type code the specification does not
//     name: 1 to 255 bytes, written as onie-syseeprom takes them and shows
//     them, numbers separated by spaces, tabs, commas or semicolons, each
//     decimal or 0x-hex and at most 255 ("0x00 0x00 0x01 0x37 0x2a"); or,
//     when the whole value is one run of an even number (at least 4) of
//     hex digits, as hex ("000001372a"). In a list, a number without 0x is
//     decimal: "0100" alone is the bytes 01 00, "0100 7" is 100 and 7.
//   - crc32, 0x00 and 0xFF cannot be set.
//
// Errors match nvcore.ErrInvalid, and leave t unchanged; so does a value
// that would make the image larger than 2048 bytes.
func (t *TLVInfo) Set(code byte, value string) error {
	v, err := onieParseValue(code, value)
	if err != nil {
		return err
	}
	tlvs := slices.Clone(t.TLVs)
	i := slices.IndexFunc(tlvs, func(x TLV) bool { return x.Code == code })
	if i >= 0 {
		tlvs[i].Value = v
	} else {
		tlvs = append(tlvs, TLV{Code: code, Value: v})
	}
	if size := onieEncodedLen(tlvs); size > onieMaxLen {
		return onieErrorf("%s: %d bytes would make the image %d bytes, more than the %d a TlvInfo EEPROM holds",
			onieLabel(code), len(v), size, onieMaxLen)
	}
	t.TLVs = tlvs
	t.onieRelayout()
	return nil
}

// Delete removes every TLV of the code. It fails, with an error matching
// nvcore.ErrInvalid, when there is none.
func (t *TLVInfo) Delete(code byte) error {
	if code == TLVCRC32 {
		return onieErrorf("crc32 cannot be deleted: Encode always writes it")
	}
	kept := make([]TLV, 0, len(t.TLVs))
	for _, v := range t.TLVs {
		if v.Code != code {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(t.TLVs) {
		return onieErrorf("no %s to delete", onieLabel(code))
	}
	t.TLVs = kept
	t.onieRelayout()
	return nil
}

// TLVName returns the cell name of a type code, as the kernel names it
// ("serial-number"), or "" for a code the specification does not name.
func TLVName(code byte) string {
	if t, ok := onieTypeOf(code); ok {
		return t.name
	}
	return ""
}

// TLVCode parses a type: a name as TLVName gives it, in any case
// ("serial-number"), or a code in hex after 0x ("0x23") or in decimal
// ("35"). The reserved codes 0x00 and 0xFF are refused, with an error
// matching nvcore.ErrInvalid, like any other text.
func TLVCode(s string) (byte, error) {
	for _, t := range onieTypes {
		if strings.EqualFold(s, t.name) {
			return t.code, nil
		}
	}
	n, err := onieParseUint(s, 255)
	if err != nil {
		names := make([]string, len(onieTypes))
		for i, t := range onieTypes {
			names[i] = t.name
		}
		return 0, onieErrorf("unknown TLV type %q: want a name (%s) or a code (0x21, 33)", s, strings.Join(names, ", "))
	}
	if onieReserved(byte(n)) {
		return 0, onieErrorf("TLV type %q: 0x%02x is reserved", s, n)
	}
	return byte(n), nil
}

// onieParseValue turns the text form of a value into the bytes Set stores.
func onieParseValue(code byte, s string) ([]byte, error) {
	if onieReserved(code) {
		return nil, onieErrorf("type 0x%02x is reserved and cannot be set", code)
	}
	if code == TLVCRC32 {
		return nil, onieErrorf("crc32 cannot be set: Encode computes it")
	}
	typ, _ := onieTypeOf(code)
	label := onieLabel(code)
	switch typ.kind {
	case onieString:
		if len(s) < 1 || len(s) > onieMaxValue {
			return nil, onieErrorf("%s: %d characters, want 1 to %d", label, len(s), onieMaxValue)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return nil, onieErrorf("%s: byte 0x%02x at %d is not printable ASCII", label, s[i], i)
			}
		}
		return []byte(s), nil
	case onieDate:
		if err := onieCheckDate(s); err != nil {
			return nil, onieErrorf("%s %q: %v", label, s, err)
		}
		return []byte(s), nil
	case onieCountry:
		if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
			return nil, onieErrorf("%s %q: want two capital letters (ISO 3166-1 alpha-2), such as US", label, s)
		}
		return []byte(s), nil
	case onieMAC:
		mac, err := onieParseMAC(s)
		if err != nil {
			return nil, onieErrorf("%s %q: %v", label, s, err)
		}
		return mac, nil
	case onieU8:
		n, err := onieParseUint(s, 255)
		if err != nil {
			return nil, onieErrorf("%s %q: want a number from 0 to 255", label, s)
		}
		return []byte{byte(n)}, nil
	case onieU16:
		n, err := onieParseUint(s, 65535)
		if err != nil || n == 0 {
			return nil, onieErrorf("%s %q: want a number from 1 to 65535", label, s)
		}
		return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
	default:
		b, err := onieParseBytes(s)
		if err != nil {
			return nil, onieErrorf("%s %q: %v", label, s, err)
		}
		return b, nil
	}
}

// onieParseUint reads a number no larger than max: decimal digits, or hex
// digits after 0x or 0X. Nothing else: no sign, no space, no octal.
func onieParseUint(s string, max uint64) (uint64, error) {
	digits, base := s, 10
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		digits, base = s[2:], 16
	}
	if digits == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		ok := c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
		if !ok {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q is more than %d", s, max)
	}
	return n, nil
}

// onieIsHex reports whether s is made of hex digits only.
func onieIsHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// onieParseBytes reads the byte forms Set documents for vendor extensions.
func onieParseBytes(s string) ([]byte, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == ';' })
	var out []byte
	switch {
	case len(fields) == 0:
		return nil, errors.New("no bytes: want numbers such as \"0x00 0x01\" or hex digits such as \"0001\"")
	case len(fields) == 1 && len(fields[0]) >= 4 && len(fields[0])%2 == 0 && onieIsHex(fields[0]):
		out, _ = hex.DecodeString(fields[0]) // checked: hex digits, even count
	default:
		if len(fields) > onieMaxValue {
			return nil, fmt.Errorf("%d bytes, a value holds at most %d", len(fields), onieMaxValue)
		}
		for i, f := range fields {
			n, err := onieParseUint(f, 255)
			if err != nil {
				return nil, fmt.Errorf("byte %d: %q is not a number from 0 to 255 (decimal, or hex after 0x)", i+1, f)
			}
			out = append(out, byte(n))
		}
	}
	if len(out) > onieMaxValue {
		return nil, fmt.Errorf("%d bytes, a value holds at most %d", len(out), onieMaxValue)
	}
	return out, nil
}

// onieParseMAC reads xx:xx:xx:xx:xx:xx and refuses what cannot be a base
// MAC address: all zeros, or a multicast address (broadcast included).
func onieParseMAC(s string) ([]byte, error) {
	if len(s) != 17 {
		return nil, fmt.Errorf("%d characters, want 17 (xx:xx:xx:xx:xx:xx)", len(s))
	}
	mac := make([]byte, 6)
	for i := range mac {
		p := s[3*i : 3*i+2]
		if !onieIsHex(p) || i < 5 && s[3*i+2] != ':' {
			return nil, errors.New("want xx:xx:xx:xx:xx:xx, two hex digits in each of the six places")
		}
		b, _ := hex.DecodeString(p)
		mac[i] = b[0]
	}
	if err := onieCheckUnicast(mac); err != nil {
		return nil, err
	}
	return mac, nil
}

func onieCheckUnicast(mac []byte) error {
	if bytes.Equal(mac, make([]byte, 6)) {
		return errors.New("all zeros is not a MAC address")
	}
	if mac[0]&1 != 0 {
		return errors.New("a multicast address (low bit of the first byte set) cannot be a base MAC address")
	}
	return nil
}

// onieCheckDate checks "MM/DD/YYYY hh:mm:ss": the shape, then the ranges.
func onieCheckDate(s string) error {
	const shape = "MM/DD/YYYY hh:mm:ss"
	if len(s) != len(shape) {
		return fmt.Errorf("%d characters, want %d (%s)", len(s), len(shape), shape)
	}
	for i := 0; i < len(s); i++ {
		want := shape[i]
		switch want {
		case '/', ' ', ':':
			if s[i] != want {
				return fmt.Errorf("want %s: %q at %d, not %q", shape, want, i, s[i])
			}
		default:
			if s[i] < '0' || s[i] > '9' {
				return fmt.Errorf("want %s: a digit at %d, not %q", shape, i, s[i])
			}
		}
	}
	num := func(from, to int) int { n, _ := strconv.Atoi(s[from:to]); return n }
	month, day, year := num(0, 2), num(3, 5), num(6, 10)
	hour, minute, second := num(11, 13), num(14, 16), num(17, 19)
	switch {
	case month < 1 || month > 12:
		return fmt.Errorf("month %02d: want 01 to 12", month)
	case day < 1 || day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day():
		return fmt.Errorf("day %02d: %04d-%02d has no such day", day, year, month)
	case hour > 23:
		return fmt.Errorf("hour %02d: want 00 to 23", hour)
	case minute > 59:
		return fmt.Errorf("minute %02d: want 00 to 59", minute)
	case second > 59:
		return fmt.Errorf("second %02d: want 00 to 59", second)
	}
	return nil
}

// onieText shows stored text: printable ASCII as it is, any other byte as
// \xNN.
func onieText(v []byte) string {
	var b strings.Builder
	for _, c := range v {
		if c >= 0x20 && c <= 0x7e && c != '\\' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// onieValueText shows a value as onie-syseeprom does: text for strings,
// XX:XX:XX:XX:XX:XX for the MAC address, decimal numbers, 0xXXXXXXXX for the
// CRC, and " 0xXX" for each byte of anything else. A value whose length is
// wrong for its type is shown as bytes (onie-syseeprom would read past it).
func onieValueText(code byte, v []byte) string {
	typ, _ := onieTypeOf(code)
	switch {
	case typ.kind == onieString || typ.kind == onieDate || typ.kind == onieCountry:
		return onieText(v)
	case typ.kind == onieMAC && len(v) == 6:
		return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", v[0], v[1], v[2], v[3], v[4], v[5])
	case typ.kind == onieU8 && len(v) == 1:
		return strconv.Itoa(int(v[0]))
	case typ.kind == onieU16 && len(v) == 2:
		return strconv.Itoa(int(binary.BigEndian.Uint16(v)))
	case typ.kind == onieCRC && len(v) == 4:
		return fmt.Sprintf("0x%08X", binary.BigEndian.Uint32(v))
	}
	var b strings.Builder
	for _, c := range v {
		fmt.Fprintf(&b, " 0x%02X", c)
	}
	return b.String()
}

// onieWriter remembers the first write error, so that a listing is written
// with plain calls and checked once.
type onieWriter struct {
	w   io.Writer
	err error
}

func (o *onieWriter) printf(format string, a ...any) {
	if o.err == nil {
		_, o.err = fmt.Fprintf(o.w, format, a...)
	}
}

func (o *onieWriter) row(code byte, v []byte) {
	typ, _ := onieTypeOf(code)
	o.printf("%-20s 0x%02X %3d %s\n", typ.display, code, len(v), onieValueText(code, v))
}

// DescribeTLVInfo writes a TlvInfo image the way onie-syseeprom shows an
// EEPROM:
//
//	TlvInfo Header:
//	   Id String:    TlvInfo
//	   Version:      1
//	   Total Length: 33
//	TLV Name             Code Len Value
//	-------------------- ---- --- -----
//	Product Name         0x21   6 ACME-1
//	...
//	CRC-32               0xFE   4 0xA1694470
//	Checksum is valid.
//
// data is the start of the device, as for DecodeTLVInfo. Unlike
// onie-syseeprom, which shows an empty EEPROM in place of one whose checksum
// is wrong, it shows the stored fields whenever their structure can be read,
// then "Checksum is invalid."; where the structure breaks it writes one line
// that says why (onie-syseeprom's own words for a reserved type), and the
// checksum line still. Text bytes outside printable ASCII are shown as
// \xNN. An image without a readable header gets onie-syseeprom's "EEPROM
// does not contain data in a valid TlvInfo format."
//
// It returns the first write error, or else the error DecodeTLVInfo gives
// for data: nil exactly when the image is valid.
func DescribeTLVInfo(w io.Writer, data []byte) error {
	o := &onieWriter{w: w}
	h, err := onieParseHeaderData(data)
	if err != nil {
		o.printf("EEPROM does not contain data in a valid TlvInfo format.\n")
		if o.err != nil {
			return o.err
		}
		return err
	}
	o.printf("TlvInfo Header:\n")
	o.printf("   Id String:    %s\n", strings.TrimRight(onieID, "\x00"))
	o.printf("   Version:      %d\n", h.version)
	o.printf("   Total Length: %d\n", h.total)
	o.printf("TLV Name             Code Len Value\n")
	o.printf("-------------------- ---- --- -----\n")
	c := onieCheckCRC(data, h)
	tlvs, werr := onieWalk(data, h, c.HasCRC)
	for _, v := range tlvs {
		o.row(v.Code, v.Value)
	}
	var oe *onieError
	switch {
	case errors.As(werr, &oe) && oe.invalidAt != 0:
		o.printf("Invalid TLV field starting at EEPROM offset %d\n", oe.invalidAt)
	case werr != nil:
		o.printf("%v\n", werr)
	case c.HasCRC:
		o.row(TLVCRC32, data[h.end()-4:h.end()])
	}
	if c.Valid() {
		o.printf("Checksum is valid.\n")
	} else {
		o.printf("Checksum is invalid.\n")
	}
	if o.err != nil {
		return o.err
	}
	_, err = DecodeTLVInfo(data)
	return err
}

// DescribeTLVs writes fields as DescribeTLVInfo writes its rows, under the
// same column heads, without header or checksum: for fields read one by
// one, as a user who may read some cells of a device but not its whole
// memory reads them.
func DescribeTLVs(w io.Writer, tlvs []TLV) error {
	o := &onieWriter{w: w}
	o.printf("TLV Name             Code Len Value\n")
	o.printf("-------------------- ---- --- -----\n")
	for _, v := range tlvs {
		o.row(v.Code, v.Value)
	}
	return o.err
}

// Describe writes the image Encode makes of t as DescribeTLVInfo does: to
// show an edit before it is written.
func (t *TLVInfo) Describe(w io.Writer) error {
	img, err := t.Encode()
	if err != nil {
		return err
	}
	return DescribeTLVInfo(w, img)
}

// TLVChangedSpans returns the ranges [start, end) of new whose bytes differ
// from old, in order; bytes of new past the end of old count as changed.
// Bytes of old past the end of new are not reported: they lie past the new
// total length, where nothing reads them.
//
// It is the write plan for editing a TlvInfo EEPROM, and that plan cannot
// promise more than this. An ONIE EEPROM holds one copy of its TlvInfo, so
// an edit rewrites it in place: there is no second copy to fall back on,
// and a power cut in the middle of the write leaves neither the old image
// nor the new one, but a mix of the two. What it can promise:
//
//   - The damage is detected, never silent: the CRC-32 covers every byte up
//     to the CRC value, so the mix fails the check (but for a 1 in 2^32
//     chance), and readers (DecodeTLVInfo, the kernel, U-Boot, ONIE) refuse
//     it instead of using half-written fields.
//   - The window is as small as it can be: writing only the spans that
//     differ touches the changed value and the CRC, often a few bytes in one
//     or two EEPROM pages, not the whole image; a span of one page is
//     written by the chip all at once or not at all.
//   - A re-run of the same edit repairs it when the structure still reads:
//     an edit that keeps every length (the usual case: a new serial number
//     of the same length, a new MAC address) leaves the fields where they
//     were, so DecodeTLVInfoLenient reads the mix, Set writes the same new
//     value again, and the new CRC makes the image valid. An edit that moved
//     fields can leave a structure no one can read; then only a copy of the
//     old image, saved before writing, restores the EEPROM. A writer should
//     therefore save the old bytes first.
func TLVChangedSpans(old, new []byte) [][2]int {
	var spans [][2]int
	start := -1
	for i := range new {
		changed := i >= len(old) || old[i] != new[i]
		switch {
		case changed && start < 0:
			start = i
		case !changed && start >= 0:
			spans = append(spans, [2]int{start, i})
			start = -1
		}
	}
	if start >= 0 {
		spans = append(spans, [2]int{start, len(new)})
	}
	return spans
}

// ONIETLV is the onie-tlv layout: the cells of a TlvInfo EEPROM, one for
// each field of a type the specification names (product-name,
// serial-number, ..., vendor-extension, and crc32 for the CRC value), at
// the value's offset, as long as the value. Fields of unknown types, and
// fields with an empty value, get no cell. A field that repeats (as
// vendor-extension may) gives cells of the same name at different offsets.
// The cells hold the raw bytes, mac-address included.
type ONIETLV struct{}

var _ nvcore.Layout = ONIETLV{}

// Name returns "onie-tlv".
func (ONIETLV) Name() string { return onieLayoutName }

// Cells reads the 11-byte header, then the TLV area it announces, never
// more than the first 2048 bytes of the device, and returns the cells, or
// the error DecodeTLVInfo gives for the content.
func (ONIETLV) Cells(r io.ReaderAt, size int64) ([]nvcore.CellInfo, error) {
	hdr, err := onieReadAt(r, min(size, onieHdrLen))
	if err != nil {
		return nil, err
	}
	h, err := onieParseHeader(hdr)
	if err != nil {
		return nil, err
	}
	data, err := onieReadAt(r, min(size, int64(h.end())))
	if err != nil {
		return nil, err
	}
	info, err := DecodeTLVInfo(data)
	if err != nil {
		return nil, err
	}
	cells := make([]nvcore.CellInfo, 0, len(info.TLVs)+1)
	for _, v := range info.TLVs {
		name := TLVName(v.Code)
		if name == "" || len(v.Value) == 0 {
			continue
		}
		cells = append(cells, nvcore.CellInfo{Name: name, Offset: v.Offset, Bytes: len(v.Value), Layout: onieLayoutName})
	}
	cells = append(cells, nvcore.CellInfo{Name: TLVName(TLVCRC32), Offset: int64(h.end() - 4), Bytes: 4, Layout: onieLayoutName})
	return cells, nil
}

// onieReadAt reads the first n bytes of r (none when n is not positive).
func onieReadAt(r io.ReaderAt, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	k, err := r.ReadAt(buf, 0)
	if k == len(buf) {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("onie-tlv: reading bytes 0x0-0x%x: %w", n, err)
}

// ONIEDetect reports whether header, the first bytes of a device, starts
// with the TlvInfo id string "TlvInfo\0": a cheap test for choosing a
// layout, not a check of the content.
func ONIEDetect(header []byte) bool {
	return len(header) >= len(onieID) && string(header[:len(onieID)]) == onieID
}
