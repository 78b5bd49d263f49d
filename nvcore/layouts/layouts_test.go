package layouts

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

func cellNames(cells []nvcore.CellInfo) []string {
	var names []string
	for _, c := range cells {
		names = append(names, c.Name+"/"+c.Layout)
	}
	return names
}

// TestAuto: auto recognises each format by signature and checksum, wherever
// the device's size leaves room, and says what it tried when none fits.
func TestAuto(t *testing.T) {
	onie, _ := hex.DecodeString("546c76496e666f00010021210641434d452d312305534e3132332406001122334455" + "2a020002fe04a1694470")
	vpd, _ := hex.DecodeString("5601313233343536373839304142434445" + "00a0a50000010d")
	pad := func(b []byte, n int, fill byte) []byte {
		return append(bytes.Clone(b), bytes.Repeat([]byte{fill}, n-len(b))...)
	}
	redundant := append(envCopy(0x2000, true, 5, 0xff, "a=1"), envCopy(0x2000, true, 6, 0xff, "a=2", "b=3")...)
	for _, c := range []struct {
		name string
		data []byte
		want []string
	}{
		{"onie", pad(onie, 256, 0xff), []string{"product-name/onie-tlv", "serial-number/onie-tlv", "mac-address/onie-tlv", "num-macs/onie-tlv", "crc32/onie-tlv"}},
		{"sl28vpd", pad(vpd, 64, 0), []string{"serial-number/sl28vpd", "base-mac-address/sl28vpd"}},
		{"single env", pad(envCopy(0x1000, false, 0, 0, "bootdelay=3", "ethaddr=00:11:22:33:44:55"), 0x4000, 0xff), []string{"bootdelay/u-boot-env", "ethaddr/u-boot-env"}},
		{"redundant env, newer second copy", redundant, []string{"a/u-boot-env-redundant", "b/u-boot-env-redundant"}},
	} {
		cells, err := (&Auto{}).Cells(bytes.NewReader(c.data), int64(len(c.data)))
		if err != nil || !slices.Equal(cellNames(cells), c.want) {
			t.Errorf("%s: cells %q, %v; want %q", c.name, cellNames(cells), err, c.want)
		}
	}

	_, err := (&Auto{}).Cells(bytes.NewReader(bytes.Repeat([]byte{0x5a}, 512)), 512)
	if err == nil || !strings.Contains(err.Error(), "no known layout") {
		t.Errorf("garbage: %v", err)
	}
	// A TlvInfo header with a bad CRC is an ONIE EEPROM with a bad CRC, not
	// "no known layout": the message says what is wrong with it.
	bad := pad(onie, 256, 0xff)
	bad[0x10] ^= 1
	if _, err := (&Auto{}).Cells(bytes.NewReader(bad), 256); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("ONIE with a bad CRC: %v", err)
	}
	// The env-size option is tried first.
	env := pad(envCopy(0x800, false, 0, 0xff, "x=1"), 0x800, 0xff)
	if l, err := (&Auto{Env: EnvConfig{Size: 0x800}}).Detect(bytes.NewReader(env), 0x800); err != nil || l.Name() != "u-boot-env" {
		t.Errorf("auto with env-size: %v, %v", l, err)
	}
}

// TestNew: names map to layouts, unknown names are refused.
func TestNew(t *testing.T) {
	for _, name := range Names {
		l, err := New(name, EnvConfig{})
		if err != nil {
			t.Errorf("New(%q): %v", name, err)
		}
		if (name == "fixed") != (l == nil) {
			t.Errorf("New(%q) = %v", name, l)
		}
		if l != nil && l.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, l.Name())
		}
	}
	if _, err := New("onie", EnvConfig{}); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("New(onie): %v", err)
	}
	if f, err := ParseEnvFlags("boolean"); err != nil || f != EnvFlagsBoolean {
		t.Errorf("ParseEnvFlags: %v %v", f, err)
	}
	if _, err := ParseEnvFlags("nor"); err == nil {
		t.Error("ParseEnvFlags(nor) succeeded")
	}
}
