package i2cdev

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestResolve(t *testing.T) {
	o := Options{SysfsRoot: "testdata/sys", DevRoot: "/fake/dev"}

	// A udev-style symlink to a node, in a temporary tree.
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "i2c-5"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "eeprom-bus")
	if err := os.Symlink("i2c-5", link); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(tmp, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		in       string
		nr       int
		path     string
		name     string
		wantErr  []string
		notExist bool
	}{
		{in: "/dev/i2c-1", nr: 1, path: "/dev/i2c-1", name: "Synopsys DesignWare I2C adapter"},
		{in: "i2c-1", nr: 1, path: "/fake/dev/i2c-1", name: "Synopsys DesignWare I2C adapter"},
		{in: "1", nr: 1, path: "/fake/dev/i2c-1", name: "Synopsys DesignWare I2C adapter"},
		{in: "12", nr: 12, path: "/fake/dev/i2c-12"}, // no sysfs entry: no name, still a bus to try
		{in: "i2c-9", nr: 9, path: "/fake/dev/i2c-9", name: "i2c-ch341-usb"},
		{in: "SMBus I801 adapter at efa0", nr: 0, path: "/fake/dev/i2c-0", name: "SMBus I801 adapter at efa0"},
		{in: "CP2112 SMBus Bridge on hidraw2", nr: 7, path: "/fake/dev/i2c-7", name: "CP2112 SMBus Bridge on hidraw2"},
		{in: "i2c-ch341-usb", nr: 9, path: "/fake/dev/i2c-9", name: "i2c-ch341-usb"},
		{in: link, nr: 5, path: link},
		{in: plain, nr: -1, path: plain},
		{in: "i915 gmbus dpc", wantErr: []string{`several I2C adapters are named "i915 gmbus dpc": i2c-3, i2c-4`, "give the number"}},
		{in: "CP2112", notExist: true, wantErr: []string{`no I2C adapter is named "CP2112"`,
			"testdata/sys/class/i2c-adapter", "testdata/sys/bus/i2c/devices", "testdata/sys/class/i2c-dev",
			`i2c-0 "SMBus I801 adapter at efa0"`, `i2c-7 "CP2112 SMBus Bridge on hidraw2"`}},
		{in: "24c02", notExist: true, wantErr: []string{`no I2C adapter is named "24c02"`}}, // a client's name, not an adapter's
		{in: "i2c-x", notExist: true, wantErr: []string{`no I2C adapter is named "i2c-x"`}},
		{in: "", wantErr: []string{"no bus given"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, err := resolve(tc.in, o)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("resolve(%q) = %+v, want an error", tc.in, a)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				if tc.notExist && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %q does not match fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := adapter{nr: tc.nr, path: tc.path, name: tc.name}
			if a != want {
				t.Errorf("resolve(%q) = %+v, want %+v", tc.in, a, want)
			}
		})
	}
}

func TestResolveNoSysfs(t *testing.T) {
	o := Options{SysfsRoot: filepath.Join(t.TempDir(), "none"), DevRoot: "/d"}
	if a, err := resolve("3", o); err != nil || a != (adapter{nr: 3, path: "/d/i2c-3"}) {
		t.Errorf("resolve(3) = %+v, %v", a, err)
	}
	_, err := resolve("some bridge", o)
	if err == nil || !strings.Contains(err.Error(), "found no adapters there") {
		t.Errorf("err = %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	var o Options
	if o.sysfs() != "/sys" || o.dev() != "/dev" {
		t.Errorf("defaults = %q, %q", o.sysfs(), o.dev())
	}
}

// fakeSysfs builds a sysfs with the layout the kernel gives I2C clients:
// the real directories under devices/, bus/i2c/devices/N-00XX symlinks to
// them, driver symlinks into bus/i2c/drivers/, and nvmem children.
type fakeSysfs struct {
	t    *testing.T
	root string
}

func newFakeSysfs(t *testing.T) *fakeSysfs {
	f := &fakeSysfs{t: t, root: t.TempDir()}
	f.mkdir("bus/i2c/devices")
	f.mkdir("bus/nvmem/devices")
	for _, d := range []string{"at24", "dummy", "ee1004"} {
		f.mkdir("bus/i2c/drivers/" + d)
	}
	return f
}

func (f *fakeSysfs) mkdir(rel string) string {
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fakeSysfs) write(rel, s string) {
	if err := os.WriteFile(filepath.Join(f.root, rel), []byte(s), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSysfs) symlink(target, rel string) {
	if err := os.Symlink(target, filepath.Join(f.root, rel)); err != nil {
		f.t.Fatal(err)
	}
}

// client adds the client name (such as "1-0050") on its adapter, bound to
// driver unless driver is "". It returns the client's real directory,
// relative to the root.
func (f *fakeSysfs) client(name, driver string) string {
	bus := strings.SplitN(name, "-", 2)[0]
	real := "devices/platform/i2c_designware.0/i2c-" + bus + "/" + name
	f.mkdir(real)
	f.write(real+"/name", "24c02\n")
	f.symlink("../../../"+real, "bus/i2c/devices/"+name)
	f.symlink("../../../../../bus/i2c", real+"/subsystem")
	if driver != "" {
		f.symlink("../../../../../bus/i2c/drivers/"+driver, real+"/driver")
	}
	return real
}

// nvmem adds the nvmem device at24 registers under the client.
func (f *fakeSysfs) nvmem(clientReal, name string, withFile bool) {
	dir := clientReal + "/" + name
	f.mkdir(dir)
	f.write(dir+"/type", "EEPROM\n")
	if withFile {
		f.write(dir+"/nvmem", "")
	}
	f.symlink("../../../"+dir, "bus/nvmem/devices/"+name)
}

func TestCheckAddress(t *testing.T) {
	f := newFakeSysfs(t)
	// A 24c04 bound to at24: 0x50 with its nvmem device, 0x51 a dummy.
	c50 := f.client("1-0050", "at24")
	f.nvmem(c50, "1-00500", true)
	f.write(c50+"/eeprom", "") // the legacy compat file is not the nvmem device
	f.client("1-0051", "dummy")
	// at24 with a firmware label; its directory lacks the nvmem file, so
	// only bus/nvmem/devices finds it.
	c52 := f.client("1-0052", "at24")
	f.nvmem(c52, "vpd", false)
	// A DDR4 SPD bound to ee1004, which registers no nvmem device.
	f.client("1-0053", "ee1004")
	// A client declared (new_device) but with no driver bound.
	f.client("1-0054", "")
	// A lone dummy with no owner below it.
	f.client("3-0010", "dummy")
	// The same address on another bus, bound.
	c := f.client("2-0050", "at24")
	f.nvmem(c, "2-00501", true)

	o := Options{SysfsRoot: f.root}
	tests := []struct {
		bus  int
		addr uint16
		want string // "" for nil
		is   error
	}{
		{1, 0x50, "0x50 on i2c-1 is in use by a kernel driver (at24): mirror it with sysfs:1-00500 instead", syscall.EBUSY},
		{1, 0x51, "0x51 on i2c-1 is in use by a kernel driver (dummy: an extra address of 1-0050, bound to at24): mirror it with sysfs:1-00500 instead", syscall.EBUSY},
		{1, 0x52, "0x52 on i2c-1 is in use by a kernel driver (at24): mirror it with sysfs:vpd instead", syscall.EBUSY},
		{1, 0x53, "0x53 on i2c-1 is in use by a kernel driver (ee1004): mirror it with sysfs:1-0053 instead", syscall.EBUSY},
		{3, 0x10, "0x10 on i2c-3 is in use by a kernel driver (dummy): mirror it with sysfs:3-0010 instead", syscall.EBUSY},
		{2, 0x50, "0x50 on i2c-2 is in use by a kernel driver (at24): mirror it with sysfs:2-00501 instead", syscall.EBUSY},
		{1, 0x54, "", nil},
		{1, 0x55, "", nil},
		{0, 0x50, "", nil},
		{1, 0x03, "", nil},
		{1, 0x77, "", nil},
		{1, 0x02, "outside the usable 7-bit range 0x03-0x77", syscall.EINVAL},
		{1, 0x78, "outside the usable 7-bit range", syscall.EINVAL},
		{1, 0x150, "outside the usable 7-bit range", syscall.EINVAL},
		{-1, 0x50, "bad adapter number", syscall.EINVAL},
	}
	for _, tc := range tests {
		err := CheckAddress(o, tc.bus, tc.addr)
		if tc.want == "" {
			if err != nil {
				t.Errorf("CheckAddress(i2c-%d, %#x) = %v, want nil", tc.bus, tc.addr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
			t.Errorf("CheckAddress(i2c-%d, %#x) = %v, want %q wrapping %v", tc.bus, tc.addr, err, tc.want, tc.is)
		}
	}

	// No sysfs at all: nothing is known to be bound.
	if err := CheckAddress(Options{SysfsRoot: filepath.Join(f.root, "none")}, 1, 0x50); err != nil {
		t.Errorf("without sysfs: %v", err)
	}
}
