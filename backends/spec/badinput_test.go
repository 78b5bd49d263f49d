package spec

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestParseRefusesZeros: an explicit zero, or an empty name, is refused,
// never taken as the default the option has when left out.
func TestParseRefusesZeros(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]string{
		"file:x,name=":    "empty device name",
		"file:x,name=a/b": "not allowed",
		"file:x,name=" + strings.Repeat("n", 256): "256 bytes",
		"file:x,stride=0":                         "stride=0: want 1, 2, 4 or 8",
		"file:x,word-size=0":                      "word-size=0: want 1, 2, 4 or 8",
		"file:x,word-size=3":                      "word-size=3: want 1, 2, 4 or 8",
		"file:x,stride=0x10":                      "stride=0x10: want 1, 2, 4 or 8",
		"file:x,size=0":                           "size=0: a window needs at least one byte",
		"file:x,layout=u-boot-env,env-size=0":     "env-size=0",
		"at24:1:0x50,pagesize=0":                  "pagesize=0: want at least 1",
		"at24:1:0x50,io-limit=0":                  "io-limit=0: want at least 1",
		"fault:64,xfer=0":                         "xfer=0: want at least 1",
	} {
		_, err := Parse(text, dir)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%.60q) = %v, want a syntax error saying %q", text, err, want)
		}
	}
	for _, text := range []string{
		"file:x,name=" + strings.Repeat("n", 255),
		"file:x,stride=8,word-size=0x4,size=1,offset=0",
		"file:x,layout=u-boot-env,env-size=0x100",
	} {
		if _, err := Parse(text, dir); err != nil {
			t.Errorf("Parse(%.60q): %v", text, err)
		}
	}
}

// TestCellsDeclaredTwice: a cells file that declares one cell file twice
// names the file, the line, and the first line.
func TestCellsDeclaredTwice(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "c.cells", "a 0 4\nb 0 4 # same offset, another name: fine\na 0 1 0 4 # a bit field at bit 0: the same file a@0,0\n")
	_, _, err := ReadCellsFile(path)
	want := path + `:3: cell "a" at 0x0 bit 0 declared twice, first on line 1`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ReadCellsFile: %v, want %q", err, want)
	}
	ok := write(t, dir, "ok.cells", "a 0 1 0 4\na 0 1 4 4\na 1 1\n")
	if cells, _, err := ReadCellsFile(ok); err != nil || len(cells) != 3 {
		t.Errorf("cells that differ in offset or bit offset: %v, %v", cells, err)
	}
}

// TestCellNameTooLong: a cell whose file name <name>@<off>,<bit> passes 255
// bytes is refused at open, pointing at its line.
func TestCellNameTooLong(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("x", 256))
	write(t, dir, "c.cells", fmt.Sprintf("fine 0 1\n%s 0x10 1\n", strings.Repeat("c", 252)))
	s, err := Parse("file:img.bin,cells=c.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Attach(nvcore.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "c.cells:2:") || !strings.Contains(err.Error(), "file name is 257 bytes") {
		t.Errorf("attach with a 257-byte cell file name: %v", err)
	}
}

// TestAttachNamesConfigLine: an attach error of a SPEC from a config file
// (an image missing, a name taken) starts with the file and the line.
func TestAttachNamesConfigLine(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("x", 64))
	conf := write(t, dir, "d.conf", "# devices\nfile:img.bin,name=one\n\nfile:missing.bin,name=two\nfile:img.bin,name=one\n")
	specs, err := ReadConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	defer reg.RemoveAll()
	if _, err := specs[0].Attach(reg); err != nil {
		t.Fatal(err)
	}
	_, err = specs[1].Attach(reg)
	if want := conf + ":4: open " + filepath.Join(dir, "missing.bin") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing image: %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing image: %v does not wrap ENOENT", err)
	}
	_, err = specs[2].Attach(reg)
	if err == nil || !strings.HasPrefix(err.Error(), conf+":5: ") || !errors.Is(err, nvcore.ErrExist) {
		t.Errorf("a name taken: %v", err)
	}
	// A SPEC given directly has no origin to name.
	s, _ := Parse("file:missing.bin", dir)
	if _, err := s.Attach(reg); err == nil || strings.Contains(err.Error(), conf) {
		t.Errorf("direct SPEC: %v", err)
	}
}

// TestAttachRefusesEnvSize: an env-size the device cannot hold is refused
// at attach, and nothing is registered.
func TestAttachRefusesEnvSize(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("x", 256))
	for text, want := range map[string]string{
		"file:img.bin,layout=u-boot-env,env-size=0x1000":             "u-boot-env: env-size 0x1000 is larger than the device (size 0x100)",
		"file:img.bin,layout=u-boot-env,env-size=0x101":              "env-size 0x101 is larger than the device",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x81":     "u-boot-env-redundant: env-size 0x81: two copies of it do not fit the device (size 0x100)",
		"file:img.bin,layout=auto,env-size=0x200":                    "env-size 0x200 is larger than the device",
		"file:img.bin,size=4,layout=u-boot-env":                      "a copy needs at least 5 bytes",
		"file:img.bin,layout=u-boot-env,env-size=0x7fffffffffffffff": "larger than the device",
	} {
		s, err := Parse(text, dir)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		reg := nvcore.NewRegistry()
		_, err = s.Attach(reg)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("attach %s: %v, want %q", text, err, want)
		}
		if n := len(reg.Devices()); n != 0 {
			t.Errorf("attach %s: %d devices registered", text, n)
		}
	}
	attachEach(t, dir,
		"file:img.bin,layout=u-boot-env,env-size=0x100",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x80",
		"file:img.bin,layout=u-boot-env-redundant",
	)
}

// attachEach attaches each SPEC to a registry of its own, and says which
// fail.
func attachEach(t *testing.T, dir string, texts ...string) {
	t.Helper()
	for _, text := range texts {
		s, err := Parse(text, dir)
		if err != nil {
			t.Fatal(err)
		}
		reg := nvcore.NewRegistry()
		if _, err := s.Attach(reg); err != nil {
			t.Errorf("attach %s: %v", text, err)
		}
		reg.RemoveAll()
	}
}

// TestWindowOverflow: a window whose size would overflow offset+size is
// refused at attach, with the sizes in the message.
func TestWindowOverflow(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img256.bin", strings.Repeat("x", 256))
	for _, text := range []string{
		fmt.Sprintf("file:img256.bin,offset=1,size=%#x", int64(math.MaxInt64)),
		fmt.Sprintf("file:img256.bin,offset=%#x,size=2", int64(math.MaxInt64)),
		"file:img256.bin,offset=1,size=256",
		"file:img256.bin,offset=256",
	} {
		s, err := Parse(text, dir)
		if err != nil {
			t.Fatal(err)
		}
		reg := nvcore.NewRegistry()
		if _, err := s.Attach(reg); err == nil || !strings.Contains(err.Error(), "past its end (0x100 bytes)") {
			t.Errorf("attach %s: %v, want a window past the end refused", text, err)
		}
	}
}

// TestFIFOImage: a FIFO is refused at once, even read-only, where open(2)
// used to wait for a writer.
func TestFIFOImage(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Parse("file:f,ro", dir)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Attach(nvcore.NewRegistry())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is a FIFO (named pipe), not a regular file or a block device") {
			t.Errorf("attach of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("attach of a FIFO blocked")
	}
}
