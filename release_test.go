package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// releasePorts is what scripts/release must write: for each binary, the
// ELF header a board's kernel checks and the build settings that made it.
var releasePorts = []struct {
	bin      string
	machine  elf.Machine
	class    elf.Class
	order    binary.ByteOrder
	settings map[string]string
	qemu     string // user-mode emulator that runs it here, if not native
}{
	{"nvmemfs-linux-amd64", elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian, map[string]string{"GOARCH": "amd64"}, ""},
	{"nvmemfs-linux-386", elf.EM_386, elf.ELFCLASS32, binary.LittleEndian, map[string]string{"GOARCH": "386"}, ""},
	{"nvmemfs-linux-armv6", elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian, map[string]string{"GOARCH": "arm", "GOARM": "6"}, "qemu-arm-static"},
	{"nvmemfs-linux-armv7", elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian, map[string]string{"GOARCH": "arm", "GOARM": "7"}, "qemu-arm-static"},
	{"nvmemfs-linux-arm64", elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian, map[string]string{"GOARCH": "arm64"}, "qemu-aarch64-static"},
	{"nvmemfs-linux-riscv64", elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian, map[string]string{"GOARCH": "riscv64"}, "qemu-riscv64-static"},
	{"nvmemfs-linux-mips", elf.EM_MIPS, elf.ELFCLASS32, binary.BigEndian, map[string]string{"GOARCH": "mips", "GOMIPS": "softfloat"}, "qemu-mips-static"},
	{"nvmemfs-linux-mipsle", elf.EM_MIPS, elf.ELFCLASS32, binary.LittleEndian, map[string]string{"GOARCH": "mipsle", "GOMIPS": "softfloat"}, "qemu-mipsel-static"},
}

// TestRelease checks the binaries scripts/release wrote into
// $NVMEMFS_RELEASE_DIR (CI builds them first; the build takes minutes, so
// the plain test run skips this): each is built for its port, static,
// stripped, and matches its SHA-256 sum; each runs its --version, natively
// or under qemu's user-mode emulation, which must show the checkout's
// version and commit (go leaves -ldflags out of the build information of
// a -trimpath build, so the binary's own answer is the proof of the stamp).
func TestRelease(t *testing.T) {
	dir := os.Getenv("NVMEMFS_RELEASE_DIR")
	if dir == "" {
		t.Skip("NVMEMFS_RELEASE_DIR is not set: run scripts/release -o DIR first")
	}
	sums := readSums(t, filepath.Join(dir, "SHA256SUMS"))
	describe := gitOutput(t, "describe", "--tags", "--always", "--dirty")
	head := gitOutput(t, "rev-parse", "HEAD")
	for _, p := range releasePorts {
		t.Run(p.bin, func(t *testing.T) {
			path := filepath.Join(dir, p.bin)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != p.machine || f.Class != p.class || f.ByteOrder != p.order || f.Type != elf.ET_EXEC {
				t.Errorf("ELF %v %v %v %v, want %v %v %v ET_EXEC", f.Machine, f.Class, f.ByteOrder, f.Type, p.machine, p.class, p.order)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
					t.Errorf("not static: has %v", prog.Type)
				}
			}
			if f.Section(".symtab") != nil {
				t.Error("not stripped: has .symtab")
			}

			info, err := buildinfo.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, s := range info.Settings {
				got[s.Key] = s.Value
			}
			want := map[string]string{"GOOS": "linux", "CGO_ENABLED": "0", "-trimpath": "true"}
			for k, v := range p.settings {
				want[k] = v
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("build setting %s=%q, want %q", k, got[k], v)
				}
			}

			if sum := fileSum(t, path); sums[p.bin] != sum {
				t.Errorf("SHA256SUMS says %q, the file's sum is %s", sums[p.bin], sum)
			}

			var cmd *exec.Cmd
			switch {
			case p.qemu == "" && (runtime.GOARCH == "amd64" || runtime.GOARCH == p.settings["GOARCH"]):
				cmd = exec.Command(path, "--version")
			case p.qemu != "":
				if _, err := exec.LookPath(p.qemu); err != nil {
					if os.Getenv("CI") != "" {
						t.Fatalf("CI runs every port's --version: %s is missing (qemu-user-static)", p.qemu)
					}
					t.Skipf("%s is not installed: --version not run", p.qemu)
				}
				cmd = exec.Command(p.qemu, path, "--version")
			default:
				return
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
			}
			if first, _, _ := strings.Cut(string(out), "\n"); first != "nvmemfs "+describe {
				t.Errorf("--version says %q, want %q", first, "nvmemfs "+describe)
			}
			if !strings.Contains(string(out), "commit  "+head) {
				t.Errorf("--version lacks the commit %s:\n%s", head, out)
			}
		})
	}
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		sums[name] = sum
	}
	return sums
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func gitOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}
