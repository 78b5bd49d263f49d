package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

var updateDemo = flag.Bool("update-demo", false, "rewrite the layout demo images in testdata/demo")

// envImage is a blank memory for the demo's U-Boot environment.
type envImage struct{ b []byte }

func (m *envImage) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *envImage) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }

// demoLayoutImages builds the demo images that hold a layout, from the
// layouts' own encoders: what the bytes mean is written here, not in a hex
// dump.
func demoLayoutImages(t *testing.T) map[string][]byte {
	t.Helper()
	images := map[string][]byte{}

	// An ONIE TlvInfo EEPROM, 24c02-sized, erased bytes 0xff.
	info := &layouts.TLVInfo{Version: 1}
	for _, f := range []struct {
		code  byte
		value string
	}{
		{layouts.TLVProductName, "NVMEMFS-DEMO-1"},
		{layouts.TLVPartNumber, "NVM-0001-A"},
		{layouts.TLVSerialNumber, "NVM2611250001"},
		{layouts.TLVMACAddress, "02:00:00:4e:56:01"},
		{layouts.TLVManufactureDate, "11/25/2026 12:00:00"},
		{layouts.TLVNumMACs, "4"},
		{layouts.TLVManufacturer, "nvmemfs"},
		{layouts.TLVCountryCode, "DE"},
	} {
		if err := info.Set(f.code, f.value); err != nil {
			t.Fatalf("onie %#x: %v", f.code, err)
		}
	}
	tlv, err := info.Encode()
	if err != nil {
		t.Fatal(err)
	}
	onie := bytes.Repeat([]byte{0xff}, 256)
	copy(onie, tlv)
	images["onie.bin"] = onie

	// A redundant U-Boot environment, two 8 KiB copies, saved twice so
	// both copies are valid and the second is the newer.
	env := &envImage{bytes.Repeat([]byte{0xff}, 0x4000)}
	cfg := layouts.EnvConfig{Size: 0x2000, Redundant: true, Flags: layouts.EnvFlagsCounter}
	e, _ := layouts.LoadEnv(env, int64(len(env.b)), cfg)
	for _, kv := range [][2]string{
		{"arch", "arm"}, {"baudrate", "115200"}, {"bootdelay", "2"},
		{"bootcmd", "run distro_bootcmd"}, {"ethaddr", "02:00:00:4e:56:01"}, {"serial#", "NVM2611250001"},
	} {
		if err := e.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := e.Save(env, true); err != nil {
			t.Fatal(err)
		}
	}
	images["uboot-env.bin"] = env.b

	// A Kontron sl28 VPD block at the start of a 64-byte OTP area.
	vpd, err := layouts.EncodeSL28VPD("NVM2611250001", [6]byte{0x02, 0, 0, 0x4e, 0x56, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	otp := make([]byte, 64)
	copy(otp, vpd)
	images["vpd.bin"] = otp
	return images
}

// TestDemoImages: the committed layout demo images are what the encoders
// make; go test -run TestDemoImages -update-demo rewrites them.
func TestDemoImages(t *testing.T) {
	for name, want := range demoLayoutImages(t) {
		path := filepath.Join("testdata", "demo", name)
		if *updateDemo {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the encoders make (%v); run go test -run TestDemoImages -update-demo", path, err)
		}
	}
}

// TestDemoLayouts: the demo shows an ONIE EEPROM, a redundant U-Boot
// environment and an sl28 VPD, each with the cells its layout finds.
func TestDemoLayouts(t *testing.T) {
	mnt := mountNV(t, "--demo")
	want := map[string][]string{
		"demo-onie": {"country-code@47,0", "crc32@4b,0", "mac-address@2a,0", "manufacture-date@32,0", "manufacturer@3e,0", "num-macs@47,0", "part-number@1e,0", "product-name@d,0", "serial-number@2a,0"},
		"demo-env":  {"arch@", "baudrate@", "bootcmd@", "bootdelay@", "ethaddr@", "serial#@"},
		"demo-vpd":  {"base-mac-address@11,0", "serial-number@2,0"},
	}
	devs := lsJSON(t, cmdOpts{}, "-m", mnt)
	for dev, prefixes := range want {
		files := cellFiles(t, mnt, dev)
		if d := devs[dev]; d.LayoutError != "" || len(d.Cells) != len(files) {
			t.Errorf("%s: layout error %q, %d cells listed, %d files", dev, d.LayoutError, len(d.Cells), len(files))
		}
		if dev == "demo-onie" {
			// Offsets of ONIE cells depend on the encoding; check names.
			var names []string
			for _, f := range files {
				names = append(names, f[:strings.Index(f, "@")])
			}
			var wantNames []string
			for _, p := range prefixes {
				wantNames = append(wantNames, p[:strings.Index(p, "@")])
			}
			if !slices.Equal(names, wantNames) {
				t.Errorf("%s cells %q, want names %q", dev, files, wantNames)
			}
			continue
		}
		if len(files) != len(prefixes) {
			t.Errorf("%s cells %q, want %q", dev, files, prefixes)
			continue
		}
		for i, p := range prefixes {
			if !strings.HasPrefix(files[i], p) {
				t.Errorf("%s cells %q, want %q", dev, files, prefixes)
				break
			}
		}
	}
	cell := func(dev, name string) []byte {
		t.Helper()
		path, err := findCellFile(filepath.Join(mnt, dev, "cells"), name)
		if err != nil {
			t.Fatal(err)
		}
		return readFile(t, path)
	}
	mac := []byte{0x02, 0, 0, 0x4e, 0x56, 0x01}
	if got := cell("demo-env", "ethaddr"); !bytes.Equal(got, mac) {
		t.Errorf("demo-env ethaddr: %x, want %x", got, mac)
	}
	if got := cell("demo-vpd", "base-mac-address"); !bytes.Equal(got, mac) {
		t.Errorf("demo-vpd base-mac-address: %x, want %x", got, mac)
	}
	if got := cell("demo-onie", "mac-address"); !bytes.Equal(got, mac) {
		t.Errorf("demo-onie mac-address: %x, want %x", got, mac)
	}
	if got := cell("demo-onie", "serial-number"); string(got) != "NVM2611250001" {
		t.Errorf("demo-onie serial-number: %q", got)
	}
	wantContains(t, "env", mustOK(t, nv(t, "env", "-m", mnt, "demo-env")).stdout, "serial#=NVM2611250001", "bootcmd=run distro_bootcmd")
	wantContains(t, "tlv", mustOK(t, nv(t, "tlv", "-m", mnt, "demo-onie")).stdout, "NVMEMFS-DEMO-1", "Checksum is valid.")
}
