package layouts

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The SPEC vector: serial 1234567890ABCDE, MAC 00:a0:a5:00:00:01.
const sl28Vector = "5601 313233343536373839304142434445 00a0a5000001 0d"

var sl28VectorMAC = [6]byte{0x00, 0xa0, 0xa5, 0x00, 0x00, 0x01}

func sl28Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// sl28WithCRC returns b with a correct CRC-8 at byte 23.
func sl28WithCRC(b []byte) []byte {
	b = bytes.Clone(b)
	b[sl28CRCOff] = sl28CRC8(b[:sl28CRCOff])
	return b
}

func TestSL28CRC8(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want byte
	}{
		{"", 0x00},
		{"00", 0x00},
		{"01", 0x07},
		{"80", 0x89},
		{"313233343536373839", 0xf4}, // the CRC-8 (SMBus) check value of "123456789"
	} {
		if got := sl28CRC8(sl28Hex(t, tt.in)); got != tt.want {
			t.Errorf("sl28CRC8(%s) = 0x%02x, want 0x%02x", tt.in, got, tt.want)
		}
	}
}

func TestSL28Vector(t *testing.T) {
	img := sl28Hex(t, sl28Vector)
	enc, err := EncodeSL28VPD("1234567890ABCDE", sl28VectorMAC)
	if err != nil || !bytes.Equal(enc, img) {
		t.Fatalf("EncodeSL28VPD = %x, %v; want %x", enc, err, img)
	}
	v, err := DecodeSL28VPD(img)
	if err != nil {
		t.Fatal(err)
	}
	if v.SerialString() != "1234567890ABCDE" || v.MAC != sl28VectorMAC {
		t.Errorf("decoded %q %x", v.SerialString(), v.MAC)
	}
	if !bytes.Equal(v.Encode(), img) {
		t.Errorf("re-encoded %x", v.Encode())
	}
	if !SL28Detect(img) {
		t.Error("SL28Detect = false")
	}
	if (SL28VPD{}).Name() != "sl28vpd" {
		t.Error("Name")
	}

	// Devices of 24 bytes and more (the VPD sits in an OTP area of its own).
	for _, size := range []int{24, 25, 64, 1024} {
		dev := append(bytes.Clone(img), bytes.Repeat([]byte{0xff}, size-len(img))...)
		cells, err := SL28VPD{}.Cells(bytes.NewReader(dev), int64(size))
		if err != nil {
			t.Fatalf("device of %d bytes: %v", size, err)
		}
		if len(cells) != 2 {
			t.Fatalf("cells %+v", cells)
		}
		want := []nvcore.CellInfo{
			{Name: "serial-number", Offset: 2, Bytes: 15, Layout: "sl28vpd"},
			{Name: "base-mac-address", Offset: 17, Bytes: 6, Layout: "sl28vpd"},
		}
		for i, c := range cells {
			if i == 1 && c.Decode == nil {
				t.Error("base-mac-address has no Decode")
			}
			if i == 0 && c.Decode != nil {
				t.Error("serial-number has a Decode")
			}
			c.Decode = nil
			if !reflect.DeepEqual(c, want[i]) {
				t.Errorf("cell %d: %+v, want %+v", i, c, want[i])
			}
			if err := c.Validate(int64(size), 1, 1); err != nil {
				t.Error(err)
			}
		}
		mac, err := cells[1].Decode(dev[17:23])
		if err != nil || !bytes.Equal(mac, sl28VectorMAC[:]) {
			t.Errorf("base-mac-address reads %x, %v", mac, err)
		}
		if !bytes.Equal(dev[2:17], []byte("1234567890ABCDE")) {
			t.Error("serial bytes")
		}
	}
}

func TestSL28Errors(t *testing.T) {
	img := sl28Hex(t, sl28Vector)
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(img); f(b); return b }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"no magic", mod(func(b []byte) { b[0] = 'v' }), "sl28vpd: no 'V' magic at offset 0"},
		{"erased", bytes.Repeat([]byte{0xff}, 64), "sl28vpd: no 'V' magic at offset 0"},
		{"no magic, short", []byte{0}, "sl28vpd: no 'V' magic at offset 0"},
		{"version 2", sl28WithCRC(mod(func(b []byte) { b[1] = 2 })), "sl28vpd: version 2 not supported"},
		{"version 0", mod(func(b []byte) { b[1] = 0 }), "sl28vpd: version 0 not supported"},
		{"version 2, short", []byte{'V', 2}, "sl28vpd: version 2 not supported"},
		{"CRC mismatch", mod(func(b []byte) { b[23] = 0x0e }), "sl28vpd: CRC-8 mismatch: stored 0x0e, computed 0x0d"},
		{"CRC mismatch in the serial", mod(func(b []byte) { b[2] = '0' }), "sl28vpd: CRC-8 mismatch: stored 0x0d, computed 0x"},
		{"empty device", nil, "sl28vpd: the device has 0 bytes, the VPD needs 24"},
		{"2 bytes", img[:2], "sl28vpd: the device has 2 bytes, the VPD needs 24"},
		{"23 bytes", img[:23], "sl28vpd: the device has 23 bytes, the VPD needs 24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeSL28VPD(tt.data)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("DecodeSL28VPD: %v, want %q", err, tt.want)
			}
			if !strings.HasSuffix(tt.want, "0x") && err.Error() != tt.want {
				t.Errorf("DecodeSL28VPD: %q, want %q", err, tt.want)
			}
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			cells, cerr := SL28VPD{}.Cells(bytes.NewReader(tt.data), int64(len(tt.data)))
			if cells != nil || cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Cells = %v, %v; want no cells and %v", cells, cerr, err)
			}
			if SL28Detect(tt.data) {
				t.Error("SL28Detect = true")
			}
		})
	}
}

func TestSL28MACDecode(t *testing.T) {
	for _, tt := range []struct {
		mac  string
		want string // "" for valid
	}{
		{"00a0a5000001", ""},
		{"020000000000", ""}, // locally administered: fine
		{"000000000000", "sl28vpd: base-mac-address 00:00:00:00:00:00 is all zeros"},
		{"010000000000", "sl28vpd: base-mac-address 01:00:00:00:00:00 is multicast (low bit of the first byte set)"},
		{"ffffffffffff", "sl28vpd: base-mac-address ff:ff:ff:ff:ff:ff is multicast (low bit of the first byte set)"},
		{"00a0a50000", "sl28vpd: base-mac-address: 5 bytes, want 6"},
	} {
		raw := sl28Hex(t, tt.mac)
		got, err := sl28DecodeMAC(raw)
		if tt.want == "" {
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("%s: %x, %v", tt.mac, got, err)
			}
			got[0] ^= 0xff
			if raw[0] == got[0] {
				t.Errorf("%s: Decode shares its input", tt.mac)
			}
			continue
		}
		if err == nil || err.Error() != tt.want || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("%s: %v, want %q", tt.mac, err, tt.want)
		}
		// The VPD itself still decodes: the cell read is what fails.
		if len(raw) == 6 {
			img := sl28Hex(t, sl28Vector)
			copy(img[17:], raw)
			img = sl28WithCRC(img)
			cells, err := SL28VPD{}.Cells(bytes.NewReader(img), 24)
			if err != nil {
				t.Fatalf("%s: %v", tt.mac, err)
			}
			if _, err := cells[1].Decode(img[17:23]); err == nil || err.Error() != tt.want {
				t.Errorf("%s: cell read %v, want %q", tt.mac, err, tt.want)
			}
			if _, err := EncodeSL28VPD("1", [6]byte(raw)); err == nil || err.Error() != tt.want {
				t.Errorf("%s: EncodeSL28VPD %v, want %q", tt.mac, err, tt.want)
			}
		}
	}
}

func TestSL28Encode(t *testing.T) {
	tests := []struct {
		serial string
		want   string // hex of the serial field, or the error
		err    bool
	}{
		{"1234567890ABCDE", "313233343536373839304142434445", false},
		{"ABC", "414243000000000000000000000000", false},
		{"A B", "412042000000000000000000000000", false},
		{"", "sl28vpd: serial number \"\": 0 characters, want 1 to 15", true},
		{"1234567890ABCDEF", "sl28vpd: serial number \"1234567890ABCDEF\": 16 characters, want 1 to 15", true},
		{"AB\x00C", "sl28vpd: serial number \"AB\\x00C\": byte 0x00 at 2 is not printable ASCII", true},
		{"Ä", "sl28vpd: serial number \"Ä\": byte 0xc3 at 0 is not printable ASCII", true},
	}
	for _, tt := range tests {
		got, err := EncodeSL28VPD(tt.serial, sl28VectorMAC)
		if tt.err {
			if err == nil || err.Error() != tt.want || !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("EncodeSL28VPD(%q) = %x, %v; want %q", tt.serial, got, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("EncodeSL28VPD(%q): %v", tt.serial, err)
		}
		if len(got) != 24 || hex.EncodeToString(got[2:17]) != tt.want {
			t.Errorf("EncodeSL28VPD(%q) = %x", tt.serial, got)
		}
		v, err := DecodeSL28VPD(got)
		if err != nil || v.SerialString() != tt.serial || v.MAC != sl28VectorMAC {
			t.Errorf("decoded %q %x, %v", v.SerialString(), v.MAC, err)
		}
	}
	// SerialString stops at the first NUL, as a C reader does.
	v := SL28Info{Serial: [15]byte{'A', 0, 'B'}}
	if v.SerialString() != "A" {
		t.Errorf("SerialString = %q", v.SerialString())
	}
	v = SL28Info{Serial: [15]byte([]byte("123456789012345"))}
	if v.SerialString() != "123456789012345" {
		t.Errorf("SerialString = %q", v.SerialString())
	}
}

type sl28FailReader struct{}

func (sl28FailReader) ReadAt(p []byte, off int64) (int, error) { return 0, nvcore.ErrIO }

func TestSL28CellsRead(t *testing.T) {
	_, err := SL28VPD{}.Cells(sl28FailReader{}, 1024)
	if !errors.Is(err, nvcore.ErrIO) || err.Error() != "sl28vpd: reading bytes 0x0-0x18: input/output error" {
		t.Errorf("error %v", err)
	}
	// A reader shorter than the size it was given.
	_, err = SL28VPD{}.Cells(bytes.NewReader(sl28Hex(t, sl28Vector)[:10]), 1024)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error %v", err)
	}
	// Only 24 bytes are read from a large device.
	r := &onieLimitReader{data: sl28Hex(t, sl28Vector)}
	if _, err := (SL28VPD{}).Cells(r, 1<<40); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.reads, [][2]int64{{0, 24}}) {
		t.Errorf("reads %v", r.reads)
	}
}

// FuzzSL28VPD checks, for any bytes: no panic; Cells and DecodeSL28VPD
// agree; the cells lie in the input; a valid block re-encodes byte for byte;
// the MAC cell's Decode accepts exactly the unicast addresses. Each input is
// also checked with its CRC-8 set right, to get past the checksum.
func FuzzSL28VPD(f *testing.F) {
	f.Add(sl28Hex(f, sl28Vector))
	f.Add(sl28Hex(f, sl28Vector)[:23])
	f.Add(sl28WithCRC(append([]byte("V\x01ABC"), make([]byte, 21)...)))
	f.Add(bytes.Repeat([]byte{0xff}, 24))
	f.Fuzz(func(t *testing.T, data []byte) {
		sl28FuzzCheck(t, data)
		if len(data) >= sl28Len {
			sl28FuzzCheck(t, sl28WithCRC(data))
		}
	})
}

func sl28FuzzCheck(t *testing.T, data []byte) {
	v, err := DecodeSL28VPD(data)
	cells, cerr := SL28VPD{}.Cells(bytes.NewReader(data), int64(len(data)))
	if (err == nil) != (cerr == nil) || err != nil && err.Error() != cerr.Error() {
		t.Fatalf("DecodeSL28VPD: %v; Cells: %v", err, cerr)
	}
	if SL28Detect(data) != (err == nil) {
		t.Fatalf("SL28Detect = %v, decode error %v", SL28Detect(data), err)
	}
	if err != nil {
		if !errors.Is(err, nvcore.ErrInvalid) {
			t.Fatalf("%v does not match ErrInvalid", err)
		}
		return
	}
	if !bytes.Equal(v.Encode(), data[:24]) {
		t.Fatalf("re-encoded %x, input %x", v.Encode(), data[:24])
	}
	if back, err := DecodeSL28VPD(v.Encode()); err != nil || back != v {
		t.Fatalf("decode(encode(x)) = %+v, %v; want %+v", back, err, v)
	}
	for _, c := range cells {
		if err := c.Validate(int64(len(data)), 1, 1); err != nil {
			t.Fatalf("cell %+v: %v", c, err)
		}
	}
	mac := data[17:23]
	_, derr := cells[1].Decode(mac)
	if want := mac[0]&1 == 0 && !bytes.Equal(mac, make([]byte, 6)); (derr == nil) != want {
		t.Fatalf("Decode(%x) = %v", mac, derr)
	}
	// A printable serial padded with NULs comes back through EncodeSL28VPD.
	if s := v.SerialString(); derr == nil && len(s) > 0 && bytes.Equal(v.Serial[len(s):], make([]byte, 15-len(s))) {
		printable := true
		for i := 0; i < len(s); i++ {
			printable = printable && s[i] >= 0x20 && s[i] <= 0x7e
		}
		if printable {
			enc, err := EncodeSL28VPD(s, v.MAC)
			if err != nil || !bytes.Equal(enc, data[:24]) {
				t.Fatalf("EncodeSL28VPD(%q, %x) = %x, %v; want %x", s, v.MAC, enc, err, data[:24])
			}
		}
	}
}
