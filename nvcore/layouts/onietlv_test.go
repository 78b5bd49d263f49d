package layouts

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The SPEC vectors.
const (
	onieVector33  = "546c76496e666f00 01 0021 2106 41434d452d31 2305 534e313233 2406 001122334455 2a02 0002 fe04 a1694470"
	onieVectorCRC = "546c76496e666f00 01 0006 fe04 d4431c18"
)

// onieHex decodes hex digits, ignoring spaces.
func onieHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// onieImage builds a TlvInfo image around body (the TLVs before the CRC-32
// TLV) with a correct CRC, without checking body: for images that are
// well-formed on the outside and broken inside.
func onieImage(body []byte) []byte {
	img := []byte(onieID)
	img = append(img, 1)
	img = binary.BigEndian.AppendUint16(img, uint16(len(body)+onieCRCTLVLen))
	img = append(img, body...)
	img = append(img, 0xfe, 4)
	return binary.BigEndian.AppendUint32(img, crc32.ChecksumIEEE(img))
}

func onieCellsOf(t *testing.T, img []byte) ([]nvcore.CellInfo, error) {
	t.Helper()
	return ONIETLV{}.Cells(bytes.NewReader(img), int64(len(img)))
}

func TestONIEVectors(t *testing.T) {
	tests := []struct {
		name  string
		image string
		tlvs  []TLV
		cells []nvcore.CellInfo
	}{
		{
			name:  "total length 33",
			image: onieVector33,
			tlvs: []TLV{
				{Code: 0x21, Value: []byte("ACME-1"), Offset: 0x0d},
				{Code: 0x23, Value: []byte("SN123"), Offset: 0x15},
				{Code: 0x24, Value: []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}, Offset: 0x1c},
				{Code: 0x2a, Value: []byte{0x00, 0x02}, Offset: 0x24},
			},
			cells: []nvcore.CellInfo{
				{Name: "product-name", Offset: 0x0d, Bytes: 6, Layout: "onie-tlv"},
				{Name: "serial-number", Offset: 0x15, Bytes: 5, Layout: "onie-tlv"},
				{Name: "mac-address", Offset: 0x1c, Bytes: 6, Layout: "onie-tlv"},
				{Name: "num-macs", Offset: 0x24, Bytes: 2, Layout: "onie-tlv"},
				{Name: "crc32", Offset: 0x28, Bytes: 4, Layout: "onie-tlv"},
			},
		},
		{
			name:  "only the CRC TLV",
			image: onieVectorCRC,
			cells: []nvcore.CellInfo{{Name: "crc32", Offset: 0x0d, Bytes: 4, Layout: "onie-tlv"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := onieHex(t, tt.image)
			info, err := DecodeTLVInfo(img)
			if err != nil {
				t.Fatalf("DecodeTLVInfo: %v", err)
			}
			want := &TLVInfo{Version: 1, TLVs: tt.tlvs}
			if !reflect.DeepEqual(info, want) {
				t.Errorf("decoded %+v, want %+v", info, want)
			}
			enc, err := info.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, img) {
				t.Errorf("re-encoded\n%x, want\n%x", enc, img)
			}
			// The same fields, built from nothing, encode to the same bytes.
			fresh := &TLVInfo{}
			for _, v := range tt.tlvs {
				fresh.TLVs = append(fresh.TLVs, TLV{Code: v.Code, Value: v.Value})
			}
			if enc, _ := fresh.Encode(); !bytes.Equal(enc, img) {
				t.Errorf("encoded from fields\n%x, want\n%x", enc, img)
			}
			for _, size := range []int{len(img), len(img) + 1, 256, 4096} {
				dev := append(bytes.Clone(img), bytes.Repeat([]byte{0xff}, size-len(img))...)
				cells, err := onieCellsOf(t, dev)
				if err != nil {
					t.Fatalf("Cells, device of %d bytes: %v", size, err)
				}
				if !reflect.DeepEqual(cells, tt.cells) {
					t.Errorf("Cells, device of %d bytes:\n got %+v\nwant %+v", size, cells, tt.cells)
				}
				for _, c := range cells {
					if err := c.Validate(int64(size), 1, 1); err != nil {
						t.Errorf("cell %s: %v", c.Name, err)
					}
				}
			}
			if !ONIEDetect(img) {
				t.Error("ONIEDetect = false")
			}
		})
	}
}

func TestONIEDeviceSmallerThanTlvInfo(t *testing.T) {
	img := onieHex(t, onieVector33)
	for _, tt := range []struct {
		size int
		want string
	}{
		{0, "onie-tlv: no TlvInfo header at offset 0"},
		{7, "onie-tlv: no TlvInfo header at offset 0"},
		{8, "onie-tlv: TlvInfo header cut short: the device has 8 bytes, the header needs 11"},
		{11, "onie-tlv: total length 33 needs 44 bytes, the device has only 11"},
		{43, "onie-tlv: total length 33 needs 44 bytes, the device has only 43"},
	} {
		cells, err := onieCellsOf(t, img[:tt.size])
		if err == nil || err.Error() != tt.want {
			t.Errorf("device of %d bytes: cells %v, error %v, want %q", tt.size, cells, err, tt.want)
		}
		if !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("device of %d bytes: %v does not match ErrInvalid", tt.size, err)
		}
		if _, derr := DecodeTLVInfo(img[:tt.size]); derr == nil || derr.Error() != tt.want {
			t.Errorf("DecodeTLVInfo, %d bytes: %v, want %q", tt.size, derr, tt.want)
		}
	}
}

func TestONIEDecodeErrors(t *testing.T) {
	good := onieHex(t, onieVector33)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		img  []byte
		want string
	}{
		{"wrong id", mod(func(b []byte) []byte { b[0] = 't'; return b }),
			"onie-tlv: no TlvInfo header at offset 0"},
		{"id without its NUL", mod(func(b []byte) []byte { b[7] = ' '; return b }),
			"onie-tlv: no TlvInfo header at offset 0"},
		{"erased", bytes.Repeat([]byte{0xff}, 256),
			"onie-tlv: no TlvInfo header at offset 0"},
		{"version 2", mod(func(b []byte) []byte { b[8] = 2; return b }),
			"onie-tlv: version 2 not supported (want 1)"},
		{"version 0", mod(func(b []byte) []byte { b[8] = 0; return b }),
			"onie-tlv: version 0 not supported (want 1)"},
		{"total length past 2048", append([]byte("TlvInfo\x00\x01\x07\xf6"), make([]byte, 4096)...),
			"onie-tlv: total length 2038 does not fit: 11 + 2038 = 2049 bytes, more than 2048"},
		{"total length 0xffff", append([]byte("TlvInfo\x00\x01\xff\xff"), make([]byte, 100)...),
			"onie-tlv: total length 65535 does not fit: 11 + 65535 = 65546 bytes, more than 2048"},
		{"total length 0", []byte("TlvInfo\x00\x01\x00\x00"),
			"onie-tlv: no CRC-32 TLV: total length 0 is shorter than its 6 bytes"},
		{"total length 5", append([]byte("TlvInfo\x00\x01\x00\x05"), 0x21, 3, 'a', 'b', 'c'),
			"onie-tlv: no CRC-32 TLV: total length 5 is shorter than its 6 bytes"},
		{"last TLV not the CRC", mod(func(b []byte) []byte { b[0x26] = 0xfd; return b }),
			"onie-tlv: no CRC-32 TLV at the end of the TLV area: found fd 04 at 0x26, want fe 04"},
		{"CRC TLV of length 5", mod(func(b []byte) []byte { b[0x27] = 5; return b }),
			"onie-tlv: no CRC-32 TLV at the end of the TLV area: found fe 05 at 0x26, want fe 04"},
		{"total length one short", mod(func(b []byte) []byte { b[10] = 32; return b }),
			"onie-tlv: no CRC-32 TLV at the end of the TLV area: found 02 fe at 0x25, want fe 04"},
		{"CRC mismatch in a value", mod(func(b []byte) []byte { b[0x0d] = 'B'; return b }),
			"onie-tlv: CRC mismatch: stored 0xa1694470, computed 0x12fd69b3"},
		{"CRC mismatch in the CRC", mod(func(b []byte) []byte { b[0x2b] ^= 1; return b }),
			"onie-tlv: CRC mismatch: stored 0xa1694471, computed 0xa1694470"},
		{"TLV runs past the end", onieImage(onieHex(t, "2a0e 0000000000000000000000000000 2128 000000000000000000")),
			"onie-tlv: TLV 0x21 at 0x1b: length 40 runs past the end of the TLV area (0x2c)"},
		{"TLV runs into the CRC TLV", onieImage(onieHex(t, "2105 414243")),
			"onie-tlv: TLV 0x21 at 0xb: length 5 runs into the CRC-32 TLV at 0x10"},
		{"length byte inside the CRC TLV", onieImage(onieHex(t, "2101 41 22")),
			"onie-tlv: TLV 0x22 at 0xe: its length byte is inside the CRC-32 TLV at 0xf"},
		{"reserved type 0xff", onieImage(onieHex(t, "2101 41 ff00")),
			"onie-tlv: invalid TLV field starting at EEPROM offset 0xe: type 0xff is reserved"},
		{"reserved type 0x00", onieImage(onieHex(t, "0000")),
			"onie-tlv: invalid TLV field starting at EEPROM offset 0xb: type 0x00 is reserved"},
		{"CRC TLV not last", onieImage(onieHex(t, "fe04 00000000 2101 41")),
			"onie-tlv: CRC-32 TLV at 0xb is not the last TLV (the TLV area ends at 0x1a)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := DecodeTLVInfo(tt.img)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("DecodeTLVInfo = %+v, %v; want error %q", info, err, tt.want)
			}
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("%v does not match nvcore.ErrInvalid", err)
			}
			cells, err := onieCellsOf(t, tt.img)
			if err == nil || err.Error() != tt.want || cells != nil {
				t.Errorf("Cells = %v, %v; want no cells and %q", cells, err, tt.want)
			}
			var sb strings.Builder
			if err := DescribeTLVInfo(&sb, tt.img); err == nil || err.Error() != tt.want {
				t.Errorf("DescribeTLVInfo = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestONIELenient(t *testing.T) {
	good := onieHex(t, onieVector33)
	bad := bytes.Clone(good)
	bad[0x0d] = 'B'
	info, check, err := DecodeTLVInfoLenient(bad)
	if err != nil {
		t.Fatalf("lenient decode of a bad CRC: %v", err)
	}
	if check.Valid() || !check.HasCRC || check.Stored != 0xa1694470 || check.Computed != 0x12fd69b3 || check.TotalLength != 33 {
		t.Errorf("check = %+v", check)
	}
	if got, _ := info.Get(TLVProductName); string(got.Value) != "BCME-1" {
		t.Errorf("product-name = %q", got.Value)
	}
	if err := check.Err(); err == nil || err.Error() != "onie-tlv: CRC mismatch: stored 0xa1694470, computed 0x12fd69b3" {
		t.Errorf("check.Err() = %v", err)
	}

	// Repair: a lenient decode, the same edit again, a new CRC.
	if err := info.Set(TLVProductName, "ACME-1"); err != nil {
		t.Fatal(err)
	}
	if fixed, _ := info.Encode(); !bytes.Equal(fixed, good) {
		t.Errorf("repaired image\n%x, want\n%x", fixed, good)
	}

	// No CRC TLV at all: the fields still read.
	noCRC := append([]byte("TlvInfo\x00\x01\x00\x05"), 0x21, 3, 'a', 'b', 'c')
	info, check, err = DecodeTLVInfoLenient(noCRC)
	if err != nil || check.HasCRC || check.Valid() || len(info.TLVs) != 1 {
		t.Errorf("no CRC: %+v, %+v, %v", info, check, err)
	}

	// A lone type byte at the end of a TLV area without a CRC TLV.
	_, _, err = DecodeTLVInfoLenient([]byte("TlvInfo\x00\x01\x00\x01\x21"))
	if err == nil || err.Error() != "onie-tlv: TLV 0x21 at 0xb: its length byte is past the end of the TLV area (0xc)" {
		t.Errorf("lone type byte: %v", err)
	}

	// A broken structure is an error even here.
	if _, _, err := DecodeTLVInfoLenient(onieImage(onieHex(t, "2105 414243"))); err == nil {
		t.Error("lenient decode accepted a TLV running into the CRC")
	}
	if _, check, err := DecodeTLVInfoLenient(good); err != nil || !check.Valid() || check.Err() != nil {
		t.Errorf("valid image: %+v, %v", check, err)
	}
}

func TestONIEUnknownAndEmptyAndRepeated(t *testing.T) {
	body := onieHex(t,
		"4203 616263"+ // unknown 0x42: kept, no cell
			"2100"+ // empty product-name: kept, no cell
			"fd05 0000013701"+ // vendor-extension
			"2202 5031"+ // part-number
			"fd03 000001"+ // vendor-extension again
			"8000") // unknown, empty
	img := onieImage(body)
	info, err := DecodeTLVInfo(img)
	if err != nil {
		t.Fatal(err)
	}
	var codes []byte
	for _, v := range info.TLVs {
		codes = append(codes, v.Code)
	}
	if !bytes.Equal(codes, []byte{0x42, 0x21, 0xfd, 0x22, 0xfd, 0x80}) {
		t.Errorf("codes % x", codes)
	}
	cells, err := onieCellsOf(t, img)
	if err != nil {
		t.Fatal(err)
	}
	want := []nvcore.CellInfo{
		{Name: "vendor-extension", Offset: 0x14, Bytes: 5, Layout: "onie-tlv"},
		{Name: "part-number", Offset: 0x1b, Bytes: 2, Layout: "onie-tlv"},
		{Name: "vendor-extension", Offset: 0x1f, Bytes: 3, Layout: "onie-tlv"},
		{Name: "crc32", Offset: 0x26, Bytes: 4, Layout: "onie-tlv"},
	}
	if !reflect.DeepEqual(cells, want) {
		t.Errorf("cells\n got %+v\nwant %+v", cells, want)
	}
	if enc, err := info.Encode(); err != nil || !bytes.Equal(enc, img) {
		t.Errorf("re-encoded %x, %v; want %x", enc, err, img)
	}
	// The nvcore config accepts the two vendor-extension cells side by side.
	for _, c := range cells {
		if err := c.Validate(int64(len(img)), 1, 1); err != nil {
			t.Error(err)
		}
	}
}

// TestONIEWalkEnds fills the largest TLV area with empty fields of an
// unknown type: the most steps a walk can take. It must end, and only
// advance.
func TestONIEWalkEnds(t *testing.T) {
	const area = onieMaxLen - onieHdrLen - onieCRCTLVLen // 2031: odd
	body := bytes.Repeat([]byte{0x42, 0x00}, area/2)
	body = append(body, 0x21) // and a lone type byte against the CRC TLV
	_, err := DecodeTLVInfo(onieImage(body))
	if err == nil || err.Error() != "onie-tlv: TLV 0x21 at 0x7f9: its length byte is inside the CRC-32 TLV at 0x7fa" {
		t.Errorf("error %v", err)
	}
	body = body[:len(body)-1]
	info, err := DecodeTLVInfo(onieImage(body))
	if err != nil || len(info.TLVs) != area/2 {
		t.Fatalf("%d TLVs, %v", len(info.TLVs), err)
	}
	for i := 1; i < len(info.TLVs); i++ {
		if info.TLVs[i].Offset != info.TLVs[i-1].Offset+2 {
			t.Fatalf("TLV %d at %#x after %#x", i, info.TLVs[i].Offset, info.TLVs[i-1].Offset)
		}
	}
	// A length of 255 everywhere, cut short by the area.
	_, err = DecodeTLVInfo(onieImage(bytes.Repeat([]byte{0x42, 0xff}, 10)))
	if err == nil || !strings.Contains(err.Error(), "runs past the end of the TLV area") {
		t.Errorf("error %v", err)
	}
}

// onieLimitReader records the reads made of it and claims a size it does
// not have: Cells must read what the header asks for, no more.
type onieLimitReader struct {
	data  []byte
	reads [][2]int64
}

func (r *onieLimitReader) ReadAt(p []byte, off int64) (int, error) {
	r.reads = append(r.reads, [2]int64{off, int64(len(p))})
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		// Past what we have: a huge device of 0xff.
		for i := n; i < len(p); i++ {
			p[i] = 0xff
		}
	}
	return len(p), nil
}

func TestONIECellsReadBounded(t *testing.T) {
	img := onieHex(t, onieVector33)
	r := &onieLimitReader{data: img}
	if _, err := (ONIETLV{}).Cells(r, 1<<40); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{0, 11}, {0, 44}}
	if !reflect.DeepEqual(r.reads, want) {
		t.Errorf("reads %v, want %v", r.reads, want)
	}
	// A header announcing the most: at most 2048 bytes read.
	hdr := append([]byte("TlvInfo\x00\x01"), 0x07, 0xf5)
	r = &onieLimitReader{data: hdr}
	_, err := (ONIETLV{}).Cells(r, 1<<40)
	if err == nil || !strings.Contains(err.Error(), "no CRC-32 TLV") {
		t.Errorf("error %v", err)
	}
	for _, rd := range r.reads {
		if rd[1] > onieMaxLen {
			t.Errorf("read of %d bytes", rd[1])
		}
	}
	// A header announcing too much: nothing read past the header.
	hdr = append([]byte("TlvInfo\x00\x01"), 0xff, 0xff)
	r = &onieLimitReader{data: hdr}
	if _, err := (ONIETLV{}).Cells(r, 1<<40); err == nil {
		t.Error("no error")
	}
	if !reflect.DeepEqual(r.reads, [][2]int64{{0, 11}}) {
		t.Errorf("reads %v", r.reads)
	}
}

type onieFailReader struct{}

func (onieFailReader) ReadAt(p []byte, off int64) (int, error) { return 0, nvcore.ErrIO }

func TestONIECellsReadError(t *testing.T) {
	_, err := ONIETLV{}.Cells(onieFailReader{}, 256)
	if !errors.Is(err, nvcore.ErrIO) || err.Error() != "onie-tlv: reading bytes 0x0-0xb: input/output error" {
		t.Errorf("error %v", err)
	}
	// A reader shorter than the size it was given.
	_, err = ONIETLV{}.Cells(bytes.NewReader(onieHex(t, onieVector33)[:20]), 256)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error %v", err)
	}
}

func TestONIESetDelete(t *testing.T) {
	info, err := DecodeTLVInfo(onieHex(t, onieVector33))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op    string
		code  byte
		value string
		codes []byte // the codes afterwards
	}{
		{"set", TLVSerialNumber, "SN-0000042", []byte{0x21, 0x23, 0x24, 0x2a}}, // in place, longer
		{"set", TLVManufactureDate, "02/29/2024 23:59:59", []byte{0x21, 0x23, 0x24, 0x2a, 0x25}},
		{"set", TLVVendorExtension, "0x00 0x00 0x01 0x37 0x2A", []byte{0x21, 0x23, 0x24, 0x2a, 0x25, 0xfd}},
		{"set", TLVProductName, "X", []byte{0x21, 0x23, 0x24, 0x2a, 0x25, 0xfd}}, // in place, shorter
		{"set", 0x99, "000102", []byte{0x21, 0x23, 0x24, 0x2a, 0x25, 0xfd, 0x99}},
		{"delete", TLVMACAddress, "", []byte{0x21, 0x23, 0x2a, 0x25, 0xfd, 0x99}},
		{"set", TLVMACAddress, "02:AB:cd:00:00:01", []byte{0x21, 0x23, 0x2a, 0x25, 0xfd, 0x99, 0x24}},
		{"delete", 0x99, "", []byte{0x21, 0x23, 0x2a, 0x25, 0xfd, 0x24}},
	}
	for i, s := range steps {
		var err error
		if s.op == "set" {
			err = info.Set(s.code, s.value)
		} else {
			err = info.Delete(s.code)
		}
		if err != nil {
			t.Fatalf("step %d, %s 0x%02x: %v", i+1, s.op, s.code, err)
		}
		var codes []byte
		for _, v := range info.TLVs {
			codes = append(codes, v.Code)
		}
		if !bytes.Equal(codes, s.codes) {
			t.Fatalf("step %d: codes % x, want % x", i+1, codes, s.codes)
		}
		img, err := info.Encode()
		if err != nil {
			t.Fatalf("step %d: Encode: %v", i+1, err)
		}
		back, err := DecodeTLVInfo(img)
		if err != nil {
			t.Fatalf("step %d: decode: %v", i+1, err)
		}
		if !reflect.DeepEqual(back, info) {
			t.Fatalf("step %d: decoded\n%+v, want\n%+v (offsets kept up to date)", i+1, back, info)
		}
	}
	checks := map[byte][]byte{
		TLVSerialNumber:    []byte("SN-0000042"),
		TLVManufactureDate: []byte("02/29/2024 23:59:59"),
		TLVVendorExtension: {0, 0, 1, 0x37, 0x2a},
		TLVProductName:     []byte("X"),
		TLVMACAddress:      {0x02, 0xab, 0xcd, 0, 0, 1},
		TLVNumMACs:         {0, 2},
	}
	for code, want := range checks {
		got, ok := info.Get(code)
		if !ok || !bytes.Equal(got.Value, want) {
			t.Errorf("Get(0x%02x) = %x, %v; want %x", code, got.Value, ok, want)
		}
	}
	if _, ok := info.Get(0x99); ok {
		t.Error("Get(0x99) found a deleted TLV")
	}
	// Get returns a copy.
	got, _ := info.Get(TLVProductName)
	got.Value[0] = 'Y'
	if again, _ := info.Get(TLVProductName); string(again.Value) != "X" {
		t.Error("Get shares the value")
	}

	for _, tt := range []struct {
		code byte
		want string
	}{
		{0x99, "onie-tlv: no TLV 0x99 to delete"},
		{TLVServiceTag, "onie-tlv: no service-tag (0x2f) to delete"},
		{TLVCRC32, "onie-tlv: crc32 cannot be deleted: Encode always writes it"},
	} {
		before := bytes.Clone(onieMust(info.Encode()))
		err := info.Delete(tt.code)
		if err == nil || err.Error() != tt.want || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("Delete(0x%02x) = %v, want %q", tt.code, err, tt.want)
		}
		if after := onieMust(info.Encode()); !bytes.Equal(before, after) {
			t.Errorf("failed Delete changed the image")
		}
	}
}

func onieMust(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestONIESetValues(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		code  byte
		value string
		want  []byte // nil: an error
		err   string
	}{
		{TLVProductName, "ACME-1", []byte("ACME-1"), ""},
		{TLVProductName, long, []byte(long), ""},
		{TLVProductName, long + "a", nil, "onie-tlv: product-name (0x21): 256 characters, want 1 to 255"},
		{TLVProductName, "", nil, "onie-tlv: product-name (0x21): 0 characters, want 1 to 255"},
		{TLVServiceTag, "tab\there", nil, "onie-tlv: service-tag (0x2f): byte 0x09 at 3 is not printable ASCII"},
		{TLVVendor, "Müller", nil, "onie-tlv: vendor (0x2d): byte 0xc3 at 1 is not printable ASCII"},
		{TLVCountryCode, "TW", []byte("TW"), ""},
		{TLVCountryCode, "tw", nil, `onie-tlv: country-code (0x2c) "tw": want two capital letters (ISO 3166-1 alpha-2), such as US`},
		{TLVCountryCode, "USA", nil, `onie-tlv: country-code (0x2c) "USA": want two capital letters (ISO 3166-1 alpha-2), such as US`},
		{TLVManufactureDate, "12/31/1999 00:00:00", []byte("12/31/1999 00:00:00"), ""},
		{TLVManufactureDate, "02/29/2023 12:00:00", nil, `onie-tlv: manufacture-date (0x25) "02/29/2023 12:00:00": day 29: 2023-02 has no such day`},
		{TLVManufactureDate, "13/01/2023 12:00:00", nil, `onie-tlv: manufacture-date (0x25) "13/01/2023 12:00:00": month 13: want 01 to 12`},
		{TLVManufactureDate, "01/01/2023 24:00:00", nil, `onie-tlv: manufacture-date (0x25) "01/01/2023 24:00:00": hour 24: want 00 to 23`},
		{TLVManufactureDate, "01/01/2023 23:60:00", nil, `onie-tlv: manufacture-date (0x25) "01/01/2023 23:60:00": minute 60: want 00 to 59`},
		{TLVManufactureDate, "01/01/2023 23:00:60", nil, `onie-tlv: manufacture-date (0x25) "01/01/2023 23:00:60": second 60: want 00 to 59`},
		{TLVManufactureDate, "1/01/2023 23:00:00", nil, `onie-tlv: manufacture-date (0x25) "1/01/2023 23:00:00": 18 characters, want 19 (MM/DD/YYYY hh:mm:ss)`},
		{TLVManufactureDate, "01-01-2023 23:00:00", nil, `onie-tlv: manufacture-date (0x25) "01-01-2023 23:00:00": want MM/DD/YYYY hh:mm:ss: '/' at 2, not '-'`},
		{TLVManufactureDate, "01/01/2O23 23:00:00", nil, `onie-tlv: manufacture-date (0x25) "01/01/2O23 23:00:00": want MM/DD/YYYY hh:mm:ss: a digit at 7, not 'O'`},
		{TLVMACAddress, "00:11:22:33:44:55", []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55}, ""},
		{TLVMACAddress, "0A:bB:cC:dD:eE:fF", []byte{0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, ""},
		{TLVMACAddress, "00:00:00:00:00:00", nil, `onie-tlv: mac-address (0x24) "00:00:00:00:00:00": all zeros is not a MAC address`},
		{TLVMACAddress, "ff:ff:ff:ff:ff:ff", nil, `onie-tlv: mac-address (0x24) "ff:ff:ff:ff:ff:ff": a multicast address (low bit of the first byte set) cannot be a base MAC address`},
		{TLVMACAddress, "01:00:5e:00:00:01", nil, `onie-tlv: mac-address (0x24) "01:00:5e:00:00:01": a multicast address (low bit of the first byte set) cannot be a base MAC address`},
		{TLVMACAddress, "00-11-22-33-44-55", nil, `onie-tlv: mac-address (0x24) "00-11-22-33-44-55": want xx:xx:xx:xx:xx:xx, two hex digits in each of the six places`},
		{TLVMACAddress, "0g:11:22:33:44:55", nil, `onie-tlv: mac-address (0x24) "0g:11:22:33:44:55": want xx:xx:xx:xx:xx:xx, two hex digits in each of the six places`},
		{TLVMACAddress, "001122334455", nil, `onie-tlv: mac-address (0x24) "001122334455": 12 characters, want 17 (xx:xx:xx:xx:xx:xx)`},
		{TLVDeviceVersion, "0", []byte{0}, ""},
		{TLVDeviceVersion, "255", []byte{255}, ""},
		{TLVDeviceVersion, "0x10", []byte{16}, ""},
		{TLVDeviceVersion, "010", []byte{10}, ""},
		{TLVDeviceVersion, "256", nil, `onie-tlv: device-version (0x26) "256": want a number from 0 to 255`},
		{TLVDeviceVersion, "-1", nil, `onie-tlv: device-version (0x26) "-1": want a number from 0 to 255`},
		{TLVDeviceVersion, " 1", nil, `onie-tlv: device-version (0x26) " 1": want a number from 0 to 255`},
		{TLVNumMACs, "73", []byte{0, 73}, ""},
		{TLVNumMACs, "65535", []byte{0xff, 0xff}, ""},
		{TLVNumMACs, "0x0100", []byte{1, 0}, ""},
		{TLVNumMACs, "0", nil, `onie-tlv: num-macs (0x2a) "0": want a number from 1 to 65535`},
		{TLVNumMACs, "65536", nil, `onie-tlv: num-macs (0x2a) "65536": want a number from 1 to 65535`},
		{TLVNumMACs, "99999999999999999999999", nil, `onie-tlv: num-macs (0x2a) "99999999999999999999999": want a number from 1 to 65535`},
		{TLVVendorExtension, "0x00 0x00 0x01 0x37 0x2A", []byte{0, 0, 1, 0x37, 0x2a}, ""},
		{TLVVendorExtension, "0,0;1\t55  42", []byte{0, 0, 1, 55, 42}, ""},
		{TLVVendorExtension, "000001372a", []byte{0, 0, 1, 0x37, 0x2a}, ""},
		{TLVVendorExtension, "00000137 0x2a", []byte{137, 0x2a}, ""}, // a list: numbers without 0x are decimal
		{TLVVendorExtension, "00000137 2a", nil, `onie-tlv: vendor-extension (0xfd) "00000137 2a": byte 2: "2a" is not a number from 0 to 255 (decimal, or hex after 0x)`},
		{TLVVendorExtension, "12", []byte{12}, ""},
		{TLVVendorExtension, "", nil, `onie-tlv: vendor-extension (0xfd) "": no bytes: want numbers such as "0x00 0x01" or hex digits such as "0001"`},
		{TLVVendorExtension, "0x100", nil, `onie-tlv: vendor-extension (0xfd) "0x100": byte 1: "0x100" is not a number from 0 to 255 (decimal, or hex after 0x)`},
		{TLVVendorExtension, "0x1 zz", nil, `onie-tlv: vendor-extension (0xfd) "0x1 zz": byte 2: "zz" is not a number from 0 to 255 (decimal, or hex after 0x)`},
		{TLVVendorExtension, strings.Repeat("00", 256), nil, `onie-tlv: vendor-extension (0xfd) "` + strings.Repeat("00", 256) + `": 256 bytes, a value holds at most 255`},
		{TLVVendorExtension, strings.Repeat("1 ", 256), nil, `onie-tlv: vendor-extension (0xfd) "` + strings.Repeat("1 ", 256) + `": 256 bytes, a value holds at most 255`},
		{0x42, "0x01 0x02", []byte{1, 2}, ""},
		{0x00, "1", nil, "onie-tlv: type 0x00 is reserved and cannot be set"},
		{0xff, "1", nil, "onie-tlv: type 0xff is reserved and cannot be set"},
		{TLVCRC32, "0x12345678", nil, "onie-tlv: crc32 cannot be set: Encode computes it"},
	}
	for _, tt := range tests {
		info := &TLVInfo{}
		err := info.Set(tt.code, tt.value)
		if tt.want == nil {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Set(0x%02x, %q) = %v, want %q", tt.code, tt.value, err, tt.err)
			}
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("Set(0x%02x, %q): %v does not match ErrInvalid", tt.code, tt.value, err)
			}
			if len(info.TLVs) != 0 {
				t.Errorf("Set(0x%02x, %q) failed and still stored %+v", tt.code, tt.value, info.TLVs)
			}
			continue
		}
		if err != nil {
			t.Errorf("Set(0x%02x, %q): %v", tt.code, tt.value, err)
			continue
		}
		if got, _ := info.Get(tt.code); !bytes.Equal(got.Value, tt.want) || got.Offset != 13 {
			t.Errorf("Set(0x%02x, %q) stored %x at %#x, want %x at 0xd", tt.code, tt.value, got.Value, got.Offset, tt.want)
		}
	}
}

func TestONIESetTooBig(t *testing.T) {
	info := &TLVInfo{}
	long := strings.Repeat("x", 255)
	// 7 fields of 257 bytes: 11 + 1799 + 6 = 1816; an 8th makes 2073.
	for i := range 7 {
		if err := info.Set(byte(0x40+i), strings.Repeat("0x41 ", 255)); err != nil {
			t.Fatal(err)
		}
	}
	before := onieMust(info.Encode())
	if len(before) != 1816 {
		t.Fatalf("image of %d bytes", len(before))
	}
	err := info.Set(TLVProductName, long)
	want := "onie-tlv: product-name (0x21): 255 bytes would make the image 2073 bytes, more than the 2048 a TlvInfo EEPROM holds"
	if err == nil || err.Error() != want || !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Set = %v, want %q", err, want)
	}
	if after := onieMust(info.Encode()); !bytes.Equal(before, after) {
		t.Error("failed Set changed the image")
	}
	// What still fits, fits exactly.
	if err := info.Set(TLVProductName, strings.Repeat("y", 2048-1816-2)); err != nil {
		t.Fatal(err)
	}
	if img := onieMust(info.Encode()); len(img) != 2048 {
		t.Errorf("image of %d bytes, want 2048", len(img))
	}
}

func TestONIEEncodeErrors(t *testing.T) {
	tests := []struct {
		info *TLVInfo
		want string
	}{
		{&TLVInfo{Version: 2}, "onie-tlv: version 2 not supported (want 1)"},
		{&TLVInfo{TLVs: []TLV{{Code: 0x21, Value: []byte("a")}, {Code: 0xfe, Value: make([]byte, 4)}}},
			"onie-tlv: TLV 2: the CRC-32 TLV is not stored in TLVs: Encode adds it"},
		{&TLVInfo{TLVs: []TLV{{Code: 0xff}}}, "onie-tlv: TLV 1: type 0xff is reserved"},
		{&TLVInfo{TLVs: []TLV{{Code: 0x00}}}, "onie-tlv: TLV 1: type 0x00 is reserved"},
		{&TLVInfo{TLVs: []TLV{{Code: 0x23, Value: make([]byte, 256)}}}, "onie-tlv: TLV 1, serial-number (0x23): 256 bytes, a value holds at most 255"},
		{&TLVInfo{TLVs: onieRepeatTLV(TLV{Code: 0x42, Value: make([]byte, 255)}, 8)},
			"onie-tlv: the image would be 2073 bytes, more than the 2048 a TlvInfo EEPROM holds"},
	}
	for _, tt := range tests {
		b, err := tt.info.Encode()
		if err == nil || err.Error() != tt.want || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("Encode = %x, %v; want %q", b, err, tt.want)
		}
	}
	// The zero TLVInfo is the CRC-only vector; version 1 too.
	for _, info := range []*TLVInfo{{}, {Version: 1}} {
		if b, err := info.Encode(); err != nil || !bytes.Equal(b, onieHex(t, onieVectorCRC)) {
			t.Errorf("Encode = %x, %v", b, err)
		}
	}
	// Empty values are allowed (the format has them) and get no cell.
	img := onieMust((&TLVInfo{TLVs: []TLV{{Code: 0x21}}}).Encode())
	cells, err := onieCellsOf(t, img)
	if err != nil || len(cells) != 1 || cells[0].Name != "crc32" {
		t.Errorf("cells %+v, %v", cells, err)
	}
}

func onieRepeatTLV(v TLV, n int) []TLV {
	out := make([]TLV, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestTLVNameCode(t *testing.T) {
	names := map[byte]string{
		0x21: "product-name", 0x22: "part-number", 0x23: "serial-number", 0x24: "mac-address",
		0x25: "manufacture-date", 0x26: "device-version", 0x27: "label-revision", 0x28: "platform-name",
		0x29: "onie-version", 0x2a: "num-macs", 0x2b: "manufacturer", 0x2c: "country-code",
		0x2d: "vendor", 0x2e: "diag-version", 0x2f: "service-tag", 0xfd: "vendor-extension", 0xfe: "crc32",
	}
	for c := range 256 {
		code := byte(c)
		if got := TLVName(code); got != names[code] {
			t.Errorf("TLVName(0x%02x) = %q, want %q", code, got, names[code])
		}
		if name := names[code]; name != "" {
			if got, err := TLVCode(name); err != nil || got != code {
				t.Errorf("TLVCode(%q) = 0x%02x, %v", name, got, err)
			}
		}
	}
	for _, tt := range []struct {
		in   string
		code byte
		err  string
	}{
		{"Serial-Number", 0x23, ""},
		{"0x23", 0x23, ""},
		{"0X2a", 0x2a, ""},
		{"35", 0x23, ""},
		{"253", 0xfd, ""},
		{"0x42", 0x42, ""},
		{"0x00", 0, `onie-tlv: TLV type "0x00": 0x00 is reserved`},
		{"255", 0, `onie-tlv: TLV type "255": 0xff is reserved`},
		{"256", 0, "unknown TLV type"},
		{"serial", 0, `onie-tlv: unknown TLV type "serial": want a name (product-name, part-number,`},
		{"", 0, "unknown TLV type"},
		{"0x", 0, "unknown TLV type"},
	} {
		code, err := TLVCode(tt.in)
		if tt.err == "" {
			if err != nil || code != tt.code {
				t.Errorf("TLVCode(%q) = 0x%02x, %v; want 0x%02x", tt.in, code, err, tt.code)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("TLVCode(%q) = %v, want an error with %q", tt.in, err, tt.err)
		}
	}
}

func TestONIEDescribe(t *testing.T) {
	const header = "TlvInfo Header:\n" +
		"   Id String:    TlvInfo\n" +
		"   Version:      1\n" +
		"   Total Length: %s\n" +
		"TLV Name             Code Len Value\n" +
		"-------------------- ---- --- -----\n"
	good := onieHex(t, onieVector33)
	bad := bytes.Clone(good)
	bad[0x2b] = 0x71
	full := &TLVInfo{}
	for _, s := range []struct {
		code  byte
		value string
	}{
		{0x21, "S6000-ON"}, {0x22, "0NM6K4"}, {0x23, "CN0NM6K4"}, {0x24, "90:B1:1C:F4:A9:63"},
		{0x25, "07/07/2015 18:40:09"}, {0x26, "1"}, {0x27, "A01"}, {0x28, "x86_64-dell_s6000_s1220-r0"},
		{0x29, "2014.08"}, {0x2a, "128"}, {0x2b, "CNTDA"}, {0x2c, "CN"}, {0x2d, "DELL"},
		{0x2e, "3.12.3.0"}, {0x2f, "JRK7ZS1"}, {0xfd, "0x00 0x00 0x02 0xA2 0x01"}, {0x99, "7"},
	} {
		if err := full.Set(s.code, s.value); err != nil {
			t.Fatal(err)
		}
	}
	fullImg := onieMust(full.Encode())
	fullCRC := binary.BigEndian.Uint32(fullImg[len(fullImg)-4:])
	texts := onieImage([]byte("\x21\x05A\x00B\\\xff"))

	tests := []struct {
		name string
		img  []byte
		want string
		err  string
	}{
		{"vector", good, strings.Replace(header, "%s", "33", 1) +
			"Product Name         0x21   6 ACME-1\n" +
			"Serial Number        0x23   5 SN123\n" +
			"Base MAC Address     0x24   6 00:11:22:33:44:55\n" +
			"MAC Addresses        0x2A   2 2\n" +
			"CRC-32               0xFE   4 0xA1694470\n" +
			"Checksum is valid.\n", ""},
		{"CRC only", onieHex(t, onieVectorCRC), strings.Replace(header, "%s", "6", 1) +
			"CRC-32               0xFE   4 0xD4431C18\n" +
			"Checksum is valid.\n", ""},
		{"bad CRC", bad, strings.Replace(header, "%s", "33", 1) +
			"Product Name         0x21   6 ACME-1\n" +
			"Serial Number        0x23   5 SN123\n" +
			"Base MAC Address     0x24   6 00:11:22:33:44:55\n" +
			"MAC Addresses        0x2A   2 2\n" +
			"CRC-32               0xFE   4 0xA1694471\n" +
			"Checksum is invalid.\n", "onie-tlv: CRC mismatch: stored 0xa1694471, computed 0xa1694470"},
		{"every type", fullImg, strings.Replace(header, "%s", strconv.Itoa(len(fullImg)-11), 1) +
			"Product Name         0x21   8 S6000-ON\n" +
			"Part Number          0x22   6 0NM6K4\n" +
			"Serial Number        0x23   8 CN0NM6K4\n" +
			"Base MAC Address     0x24   6 90:B1:1C:F4:A9:63\n" +
			"Manufacture Date     0x25  19 07/07/2015 18:40:09\n" +
			"Device Version       0x26   1 1\n" +
			"Label Revision       0x27   3 A01\n" +
			"Platform Name        0x28  26 x86_64-dell_s6000_s1220-r0\n" +
			"ONIE Version         0x29   7 2014.08\n" +
			"MAC Addresses        0x2A   2 128\n" +
			"Manufacturer         0x2B   5 CNTDA\n" +
			"Country Code         0x2C   2 CN\n" +
			"Vendor Name          0x2D   4 DELL\n" +
			"Diag Version         0x2E   8 3.12.3.0\n" +
			"Service Tag          0x2F   7 JRK7ZS1\n" +
			"Vendor Extension     0xFD   5  0x00 0x00 0x02 0xA2 0x01\n" +
			"Unknown              0x99   1  0x07\n" +
			"CRC-32               0xFE   4 0x" + strings.ToUpper(hex.EncodeToString(binary.BigEndian.AppendUint32(nil, fullCRC))) + "\n" +
			"Checksum is valid.\n", ""},
		{"odd bytes in text", texts, strings.Replace(header, "%s", "13", 1) +
			`Product Name         0x21   5 A\x00B\x5c\xff` + "\n" +
			"CRC-32               0xFE   4 0x" + strings.ToUpper(hex.EncodeToString(texts[len(texts)-4:])) + "\n" +
			"Checksum is valid.\n", ""},
		{"wrong lengths", onieImage([]byte("\x24\x02\x01\x02\x26\x00\x2a\x01\x05")), strings.Replace(header, "%s", "15", 1) +
			"Base MAC Address     0x24   2  0x01 0x02\n" +
			"Device Version       0x26   0 \n" +
			"MAC Addresses        0x2A   1  0x05\n" +
			"CRC-32               0xFE   4 0x" + strings.ToUpper(hex.EncodeToString(onieImage([]byte("\x24\x02\x01\x02\x26\x00\x2a\x01\x05"))[22:])) + "\n" +
			"Checksum is valid.\n", ""},
		{"reserved type", onieImage([]byte("\x21\x01A\xff\x00")), strings.Replace(header, "%s", "11", 1) +
			"Product Name         0x21   1 A\n" +
			"Invalid TLV field starting at EEPROM offset 14\n" +
			"Checksum is valid.\n", "onie-tlv: invalid TLV field starting at EEPROM offset 0xe: type 0xff is reserved"},
		{"overrun", onieImage([]byte("\x21\x09A")), strings.Replace(header, "%s", "9", 1) +
			"onie-tlv: TLV 0x21 at 0xb: length 9 runs past the end of the TLV area (0x14)\n" +
			"Checksum is valid.\n", "onie-tlv: TLV 0x21 at 0xb: length 9 runs past the end of the TLV area (0x14)"},
		{"no CRC", append([]byte("TlvInfo\x00\x01\x00\x03"), 0x21, 1, 'A'), strings.Replace(header, "%s", "3", 1) +
			"Product Name         0x21   1 A\n" +
			"Checksum is invalid.\n", "onie-tlv: no CRC-32 TLV: total length 3 is shorter than its 6 bytes"},
		{"no header", []byte("TlvInfo"), "EEPROM does not contain data in a valid TlvInfo format.\n",
			"onie-tlv: no TlvInfo header at offset 0"},
		{"version 2", []byte("TlvInfo\x00\x02\x00\x06"), "EEPROM does not contain data in a valid TlvInfo format.\n",
			"onie-tlv: version 2 not supported (want 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sb strings.Builder
			err := DescribeTLVInfo(&sb, tt.img)
			if sb.String() != tt.want {
				t.Errorf("output\n%s\nwant\n%s", sb.String(), tt.want)
			}
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || err.Error() != tt.err) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}

	// The method shows an edit before it is written.
	info := onieMustInfo(DecodeTLVInfo(good))
	var sb strings.Builder
	if err := info.Describe(&sb); err != nil || !strings.HasSuffix(sb.String(), "Checksum is valid.\n") {
		t.Errorf("Describe: %v\n%s", err, sb.String())
	}
	if err := (&TLVInfo{Version: 9}).Describe(&sb); err == nil {
		t.Error("Describe of an unencodable TLVInfo: no error")
	}
	// A failing writer's error comes first.
	if err := DescribeTLVInfo(onieErrWriter{}, bad); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("error %v, want the write error", err)
	}
	if err := DescribeTLVInfo(onieErrWriter{}, []byte("x")); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("error %v, want the write error", err)
	}
}

type onieErrWriter struct{}

func (onieErrWriter) Write(p []byte) (int, error) { return 0, io.ErrShortWrite }

func onieMustInfo(info *TLVInfo, err error) *TLVInfo {
	if err != nil {
		panic(err)
	}
	return info
}

func TestTLVChangedSpans(t *testing.T) {
	tests := []struct {
		old, new string
		want     [][2]int
	}{
		{"abcdef", "abcdef", nil},
		{"abcdef", "abXdeY", [][2]int{{2, 3}, {5, 6}}},
		{"abcdef", "XYcdef", [][2]int{{0, 2}}},
		{"abc", "abcdef", [][2]int{{3, 6}}},
		{"abcdef", "abc", nil},
		{"abcdef", "aXc", [][2]int{{1, 2}}},
		{"", "ab", [][2]int{{0, 2}}},
		{"ab", "", nil},
	}
	for _, tt := range tests {
		if got := TLVChangedSpans([]byte(tt.old), []byte(tt.new)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("TLVChangedSpans(%q, %q) = %v, want %v", tt.old, tt.new, got, tt.want)
		}
	}
	// An edit that keeps the lengths touches the value and the CRC only.
	info := onieMustInfo(DecodeTLVInfo(onieHex(t, onieVector33)))
	old := onieMust(info.Encode())
	if err := info.Set(TLVSerialNumber, "SN124"); err != nil {
		t.Fatal(err)
	}
	got := TLVChangedSpans(old, onieMust(info.Encode()))
	if len(got) < 2 || got[0] != [2]int{0x19, 0x1a} {
		t.Fatalf("spans %v", got)
	}
	for _, s := range got[1:] {
		if s[0] < 0x28 || s[1] > 0x2c {
			t.Errorf("span %v outside the CRC value (0x28-0x2c)", s)
		}
	}
}

func TestONIEDetect(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"TlvInfo\x00", true},
		{"TlvInfo\x00\x01\x00\x06", true},
		{"TlvInfo", false},
		{"TlvInfo ", false},
		{"", false},
		{"\xff\xff\xff\xff\xff\xff\xff\xff", false},
	} {
		if got := ONIEDetect([]byte(tt.in)); got != tt.want {
			t.Errorf("ONIEDetect(%q) = %v", tt.in, got)
		}
	}
	if (ONIETLV{}).Name() != "onie-tlv" {
		t.Error("Name")
	}
}

// FuzzONIETLV checks, for any bytes: no panic; the cells lie in the input;
// Cells, DecodeTLVInfo and DescribeTLVInfo agree on the verdict; a valid
// image re-encodes byte for byte and decodes back the same. Random bytes
// rarely carry a good CRC, so each input is also checked with its CRC-32
// TLV set right, which lets the fuzzer explore the fields.
func FuzzONIETLV(f *testing.F) {
	f.Add(onieHex(f, onieVector33))
	f.Add(onieHex(f, onieVectorCRC))
	f.Add(onieImage([]byte("\x42\x00\xfd\x03abc\x21\x00")))
	f.Add([]byte("TlvInfo\x00\x01\x07\xf5"))
	f.Fuzz(func(t *testing.T, data []byte) {
		onieFuzzCheck(t, data)
		h, err := onieParseHeaderData(data)
		if err != nil || h.total < onieCRCTLVLen {
			return
		}
		fixed := bytes.Clone(data)
		end := h.end()
		fixed[end-6], fixed[end-5] = TLVCRC32, 4
		binary.BigEndian.PutUint32(fixed[end-4:], crc32.ChecksumIEEE(fixed[:end-4]))
		onieFuzzCheck(t, fixed)
		if _, err := DecodeTLVInfo(fixed); err != nil && strings.Contains(err.Error(), "CRC") && !strings.Contains(err.Error(), "CRC-32 TLV") {
			t.Fatalf("fixed CRC still refused: %v", err)
		}
	})
}

func onieFuzzCheck(t *testing.T, data []byte) {
	info, err := DecodeTLVInfo(data)
	cells, cerr := ONIETLV{}.Cells(bytes.NewReader(data), int64(len(data)))
	if (err == nil) != (cerr == nil) || err != nil && err.Error() != cerr.Error() {
		t.Fatalf("DecodeTLVInfo: %v; Cells: %v", err, cerr)
	}
	if derr := DescribeTLVInfo(io.Discard, data); (err == nil) != (derr == nil) {
		t.Fatalf("DecodeTLVInfo: %v; DescribeTLVInfo: %v", err, derr)
	}
	linfo, check, lerr := DecodeTLVInfoLenient(data)
	if err != nil {
		if !errors.Is(err, nvcore.ErrInvalid) {
			t.Fatalf("%v does not match ErrInvalid", err)
		}
		if cells != nil {
			t.Fatalf("cells %v with an error", cells)
		}
		if lerr == nil && check.Valid() {
			t.Fatalf("lenient decode finds the image valid, strict says %v", err)
		}
		if lerr == nil && check.HasCRC {
			// What the lenient decode reads fits where it was: it
			// encodes, and a repair can write it back.
			if _, eerr := linfo.Encode(); eerr != nil {
				t.Fatalf("Encode of a leniently decoded image: %v", eerr)
			}
		}
		return
	}
	if lerr != nil || !check.Valid() || !reflect.DeepEqual(linfo, info) {
		t.Fatalf("lenient decode: %+v, %+v, %v", linfo, check, lerr)
	}
	for _, c := range cells {
		if err := c.Validate(int64(len(data)), 1, 1); err != nil {
			t.Fatalf("cell %+v: %v", c, err)
		}
		if c.Offset+int64(c.Bytes) > onieMaxLen {
			t.Fatalf("cell %+v past 2048", c)
		}
	}
	enc, err := info.Encode()
	if err != nil {
		t.Fatalf("Encode of a decoded image: %v", err)
	}
	if !bytes.Equal(enc, data[:len(enc)]) {
		t.Fatalf("re-encoded\n%x, input\n%x", enc, data[:len(enc)])
	}
	back, err := DecodeTLVInfo(enc)
	if err != nil || !reflect.DeepEqual(back, info) {
		t.Fatalf("decode(encode(x)) = %+v, %v; want %+v", back, err, info)
	}
}

// FuzzONIESet checks Set with any code and text: no panic; a refusal
// changes nothing; an accepted value encodes, decodes back and shows.
func FuzzONIESet(f *testing.F) {
	f.Add(byte(0x23), "SN123")
	f.Add(byte(0x24), "00:11:22:33:44:55")
	f.Add(byte(0x25), "02/29/2024 23:59:59")
	f.Add(byte(0x2a), "0x10")
	f.Add(byte(0xfd), "0x00 0x00 0x01 0x37")
	f.Add(byte(0xfd), "000001372a")
	f.Add(byte(0x77), "1,2;3")
	f.Fuzz(func(t *testing.T, code byte, value string) {
		info := onieMustInfo(DecodeTLVInfo(onieHex(t, onieVector33)))
		before := onieMust(info.Encode())
		if err := info.Set(code, value); err != nil {
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Fatalf("%v does not match ErrInvalid", err)
			}
			if after := onieMust(info.Encode()); !bytes.Equal(before, after) {
				t.Fatal("a refused Set changed the image")
			}
			return
		}
		img, err := info.Encode()
		if err != nil {
			t.Fatalf("Encode after Set: %v", err)
		}
		back, err := DecodeTLVInfo(img)
		if err != nil || !reflect.DeepEqual(back, info) {
			t.Fatalf("decode after Set: %+v, %v; want %+v", back, err, info)
		}
		got, ok := back.Get(code)
		if !ok || len(got.Value) == 0 || len(got.Value) > 255 {
			t.Fatalf("Get after Set: %+v, %v", got, ok)
		}
		// What Describe shows for bytes, Set takes back.
		if typ, _ := onieTypeOf(code); typ.kind == onieBytes {
			again := &TLVInfo{}
			if err := again.Set(code, onieValueText(code, got.Value)); err != nil {
				t.Fatalf("Set of the shown value %q: %v", onieValueText(code, got.Value), err)
			}
			if g, _ := again.Get(code); !bytes.Equal(g.Value, got.Value) {
				t.Fatalf("shown value read back as %x, want %x", g.Value, got.Value)
			}
		}
		if err := DescribeTLVInfo(io.Discard, img); err != nil {
			t.Fatalf("DescribeTLVInfo: %v", err)
		}
	})
}
