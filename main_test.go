package main

// End-to-end tests of the real nvmemfs binary: each test mounts it on a
// fresh folder with `nvmemfs mount` (which returns once the mount is ready),
// drives it with the CLI, real tools (dd, cat, cmp, hexdump, sh) and real
// system calls, and unmounts it in a cleanup that fails the test on a mount
// or a server left behind.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/control"
)

// nvmemfsBin is the binary under test, built once by TestMain.
var nvmemfsBin string

// execTimeout bounds every command a test runs, so that nothing can hang.
const execTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	// The soak's reader processes re-run this binary for one test that
	// needs no nvmemfs binary of its own.
	if os.Getenv(soakReaderEnv) != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "nvmemfs-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	nvmemfsBin = filepath.Join(dir, "nvmemfs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	out, err := exec.CommandContext(ctx, "go", "build", "-o", nvmemfsBin, ".").CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if err := checkMachine(nvmemfsBin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// elfMachines is the ELF machine of each GOARCH the tests run on.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"arm64":   elf.EM_AARCH64,
	"riscv64": elf.EM_RISCV,
	"mips":    elf.EM_MIPS,
}

// checkMachine fails unless bin is built for the machine this test binary
// runs as. The build inherits GOARCH from the environment: a test binary
// cross-built and started under an emulator without GOARCH in its
// environment would test an amd64 nvmemfs and pass.
func checkMachine(bin string) error {
	want, ok := elfMachines[runtime.GOARCH]
	if !ok {
		return nil
	}
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s is built for %v, but the tests run as %s (%v): set GOARCH for the build", bin, f.Machine, runtime.GOARCH, want)
	}
	return nil
}

// requireFUSE skips without /dev/fuse, except in CI, where these tests must
// run for real.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs /dev/fuse: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// skipOrFailInCI skips a test whose prerequisite this machine lacks, except
// in CI, which is set up to have them all: there it fails.
func skipOrFailInCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI needs this: "+format, args...)
	}
	t.Skipf(format, args...)
}

// result is what a finished command left.
type result struct {
	args           []string
	stdout, stderr string
	code           int // exit code; -1 if it did not run or was killed
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("%q: exit %d (%v)\nstdout: %s\nstderr: %s", r.args, r.code, r.err, r.stdout, r.stderr)
}

// cmdOpts tunes a command: its folder and extra environment.
type cmdOpts struct {
	dir string
	env []string
}

// runCmd runs a command with a timeout. NVMEMFS_MOUNT is removed from the
// inherited environment so that only tests that mean to use it do.
func runCmd(t *testing.T, o cmdOpts, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	cmd.Dir = o.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NVMEMFS_MOUNT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, o.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: append([]string{name}, args...), stdout: stdout.String(), stderr: stderr.String(), code: -1, err: err}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		t.Errorf("%q timed out after %v", r.args, execTimeout)
	}
	return r
}

// nv runs the binary under test.
func nv(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(t, cmdOpts{}, nvmemfsBin, args...)
}

// mustOK fails the test unless r exited 0.
func mustOK(t *testing.T, r result) result {
	t.Helper()
	if r.err != nil || r.code != 0 {
		t.Fatalf("want success, got %v", r)
	}
	return r
}

// mustFail fails the test unless r exited non-zero, and returns its stderr.
func mustFail(t *testing.T, r result) string {
	t.Helper()
	if r.code <= 0 {
		t.Fatalf("want a non-zero exit, got %v", r)
	}
	return r.stderr
}

// wantContains fails the test unless s contains every one of subs.
func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s: want it to contain %q, got %q", what, sub, s)
		}
	}
}

// isMounted reports whether dir is a mountpoint.
func isMounted(t *testing.T, dir string) bool {
	return mountCount(t, dir) > 0
}

// mountCount is how many mounts are stacked on dir.
func mountCount(t *testing.T, dir string) int {
	t.Helper()
	mounts, err := control.MountsAt(dir)
	if err != nil {
		t.Fatalf("read the mount table: %v", err)
	}
	return len(mounts)
}

// serverPIDs lists the live (not zombie) nvmemfs servers of this test
// binary serving mnt: `nvmemfs mount --foreground ... mnt`.
func serverPIDs(t *testing.T, mnt string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("read /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // gone, or a zombie (whose cmdline is empty)
		}
		argv := programArgv(raw, nvmemfsBin)
		if argv[0] != nvmemfsBin || !slices.Contains(argv, "--foreground") || argv[len(argv)-1] != mnt {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// programArgv is the command line that /proc/PID/cmdline holds (raw), as
// the program bin was given it. Where bin runs under an interpreter that
// binfmt_misc starts for it, as qemu-user runs an arm or arm64 binary when
// the tests run emulated (.ci/emulated-tests), the process is the
// interpreter and cmdline is its own: the interpreter, the path of bin,
// then, with binfmt's P flag (Debian registers qemu with it), the argv[0]
// bin was given, then the rest. qemu shows the program's own argv only to
// the program itself (/proc/self/cmdline), not to the test reading /proc:
// taken as it is, every server looked absent under emulation. The tests
// start bin by its full path, so its argv[0] is bin in every form.
func programArgv(raw []byte, bin string) []string {
	argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	if len(argv) > 1 && argv[0] != bin && argv[1] == bin {
		argv = argv[1:] // the interpreter's name, before the binary's path
		if len(argv) > 1 && argv[1] == bin {
			argv = argv[1:] // the path, before the argv[0] the P flag kept
		}
	}
	return argv
}

// TestProgramArgv: a server's command line is found both when it runs
// natively and when binfmt_misc runs it under an interpreter (qemu-user,
// with or without the P flag).
func TestProgramArgv(t *testing.T) {
	const bin = "/tmp/nvmemfs-e2e-1/nvmemfs"
	want := []string{bin, "mount", "--foreground", "/mnt"}
	for _, c := range []struct{ name, cmdline string }{
		{"native", bin + "\x00mount\x00--foreground\x00/mnt\x00"},
		{"binfmt P", "/usr/libexec/qemu-binfmt/arm-binfmt-P\x00" + bin + "\x00" + bin + "\x00mount\x00--foreground\x00/mnt\x00"},
		{"binfmt", "/usr/bin/qemu-aarch64-static\x00" + bin + "\x00mount\x00--foreground\x00/mnt\x00"},
	} {
		if got := programArgv([]byte(c.cmdline), bin); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", c.name, got, want)
		}
	}
}

// waitServerGone waits up to timeout for every server of mnt to exit.
func waitServerGone(t *testing.T, mnt string, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pids := serverPIDs(t, mnt)
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSocketGone waits up to timeout for `nvmemfs ls -m mnt` to fail, and
// returns its last result.
func waitSocketGone(t *testing.T, mnt string, timeout time.Duration) result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := nv(t, "ls", "-m", mnt)
		if r.code != 0 || time.Now().After(deadline) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanupMount runs `nvmemfs unmount mnt` if a mount or a server is left,
// fails the test if the mount is still there afterwards (and then unmounts
// it lazily), and fails it if the server does not exit (and then kills it,
// by its process id).
func cleanupMount(t *testing.T, mnt string) {
	t.Helper()
	if isMounted(t, mnt) || len(serverPIDs(t, mnt)) > 0 {
		if r := nv(t, "unmount", mnt); r.code != 0 {
			t.Logf("cleanup: %v", r)
		}
	}
	if isMounted(t, mnt) {
		runCmd(t, cmdOpts{}, "umount", "-l", mnt)
		t.Errorf("cleanup: %s was still mounted after `nvmemfs unmount` (unmounted lazily)", mnt)
	}
	for _, pid := range waitServerGone(t, mnt, 10*time.Second) {
		t.Errorf("cleanup: the server of %s (pid %d) did not exit; killing it", mnt, pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mountNV mounts nvmemfs with the given mount flags on a fresh folder and
// returns the folder. The cleanup unmounts and checks nothing is left.
func mountNV(t *testing.T, flags ...string) string {
	t.Helper()
	requireFUSE(t)
	mnt := t.TempDir()
	t.Cleanup(func() { cleanupMount(t, mnt) })
	args := append(append([]string{"mount"}, flags...), mnt)
	mustOK(t, nv(t, args...))
	if !isMounted(t, mnt) {
		t.Fatalf("mount returned success but %s is not in /proc/mounts", mnt)
	}
	return mnt
}

// mountFails runs `nvmemfs mount FLAGS... mnt`, wants it to fail, checks that
// neither a mount nor a server was left, and returns its stderr.
func mountFails(t *testing.T, mnt string, flags ...string) string {
	t.Helper()
	requireFUSE(t)
	t.Cleanup(func() { cleanupMount(t, mnt) })
	args := append(append([]string{"mount"}, flags...), mnt)
	stderr := mustFail(t, nv(t, args...))
	if isMounted(t, mnt) {
		t.Errorf("a failed mount left %s mounted", mnt)
	}
	if pids := waitServerGone(t, mnt, 5*time.Second); len(pids) > 0 {
		t.Errorf("a failed mount left servers %v", pids)
	}
	return stderr
}

// writeFile writes a file into dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pattern returns n bytes that differ from one image to the next.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// mountImages mounts the given SPECs through a config file (one SPEC a
// line), so that SPEC options survive whatever --device does with commas.
func mountImages(t *testing.T, specs ...string) string {
	t.Helper()
	conf := writeFile(t, t.TempDir(), "devices.conf", []byte(strings.Join(specs, "\n")+"\n"))
	return mountNV(t, "--config", conf)
}

// lsDevice is a device as `nvmemfs ls --json` documents it.
type lsDevice struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Size        int64  `json:"size"`
	Mode        string `json:"mode"`
	ForceRO     bool   `json:"force_ro"`
	Cached      bool   `json:"cached"`
	WordSize    int    `json:"word_size"`
	Stride      int    `json:"stride"`
	Source      string `json:"source"`
	Layout      string `json:"layout"`
	LayoutError string `json:"layout_error"`
	Cells       []struct {
		Name   string `json:"name"`
		Offset int64  `json:"offset"`
		Bytes  int    `json:"bytes"`
		Layout string `json:"layout"`
	} `json:"cells"`
}

// lsJSON runs `nvmemfs ls --json` with extra arguments and options.
func lsJSON(t *testing.T, o cmdOpts, args ...string) map[string]lsDevice {
	t.Helper()
	r := mustOK(t, runCmd(t, o, nvmemfsBin, append([]string{"ls", "--json"}, args...)...))
	var list []lsDevice
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	if list == nil {
		t.Fatalf("ls --json: want a JSON array, got %q", r.stdout)
	}
	m := map[string]lsDevice{}
	for _, d := range list {
		m[d.Name] = d
	}
	if len(m) != len(list) {
		t.Fatalf("ls --json: a name is listed twice: %s", r.stdout)
	}
	return m
}

func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// 1. The demo devices.
func TestDemo(t *testing.T) {
	mnt := mountNV(t, "--demo")

	if got, want := readDirNames(t, mnt), []string{"demo-eeprom", "demo-env", "demo-fram", "demo-onie", "demo-otp", "demo-vpd"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}

	r := mustOK(t, runCmd(t, cmdOpts{}, "cat", filepath.Join(mnt, "demo-eeprom", "type")))
	if r.stdout != "EEPROM\n" {
		t.Errorf("cat demo-eeprom/type = %q, want %q", r.stdout, "EEPROM\n")
	}
	for dev, typ := range map[string]string{"demo-otp": "OTP\n", "demo-fram": "FRAM\n"} {
		if got := string(readFile(t, filepath.Join(mnt, dev, "type"))); got != typ {
			t.Errorf("%s/type = %q, want %q", dev, got, typ)
		}
	}

	mac := filepath.Join(mnt, "demo-eeprom", "cells", "mac-address@fa,0")
	r = mustOK(t, runCmd(t, cmdOpts{}, "hexdump", "-v", "-e", `/1 "%02x "`, mac))
	if got, want := strings.TrimSpace(r.stdout), "00 11 22 33 44 55"; got != want {
		t.Errorf("hexdump %s = %q, want %q", mac, got, want)
	}
	if got, want := readFile(t, mac), []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}; !bytes.Equal(got, want) {
		t.Errorf("read %s = % x, want % x", mac, got, want)
	}
	if fi, err := os.Stat(mac); err != nil || fi.Size() != 6 {
		t.Errorf("stat %s: size %v, err %v; want 6", mac, fi.Size(), err)
	}

	otpImage, err := filepath.Abs("testdata/demo/otp.bin")
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", filepath.Join(mnt, "demo-otp", "nvmem"), otpImage))

	devs := lsJSON(t, cmdOpts{}, "-m", mnt)
	if len(devs) != 6 {
		t.Errorf("ls --json lists %d devices, want 6: %v", len(devs), devs)
	}
	want := map[string]struct {
		image, mode, typ string
	}{
		"demo-eeprom": {"eeprom.bin", "0644", "EEPROM"},
		"demo-otp":    {"otp.bin", "0444", "OTP"},
		"demo-fram":   {"fram.bin", "0644", "FRAM"},
		"demo-onie":   {"onie.bin", "0644", "EEPROM"},
		"demo-env":    {"uboot-env.bin", "0644", "Unknown"},
		"demo-vpd":    {"vpd.bin", "0444", "OTP"},
	}
	for name, w := range want {
		d, ok := devs[name]
		if !ok {
			t.Errorf("ls --json lacks %s", name)
			continue
		}
		fi, err := os.Stat(filepath.Join("testdata/demo", w.image))
		if err != nil {
			t.Fatal(err)
		}
		if d.Size != fi.Size() || d.Mode != w.mode || d.Type != w.typ {
			t.Errorf("ls --json %s: size %d mode %s type %s; want size %d mode %s type %s",
				name, d.Size, d.Mode, d.Type, fi.Size(), w.mode, w.typ)
		}
		// The listing and the tree agree on size and mode.
		nvm := filepath.Join(mnt, name, "nvmem")
		st, err := os.Stat(nvm)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != d.Size || fmt.Sprintf("%04o", st.Mode().Perm()) != d.Mode {
			t.Errorf("stat %s: size %d mode %04o; ls says size %d mode %s", nvm, st.Size(), st.Mode().Perm(), d.Size, d.Mode)
		}
	}
	if d := devs["demo-otp"]; d.WordSize != 4 || d.Stride != 4 || len(d.Cells) != 3 {
		t.Errorf("ls --json demo-otp: word size %d, stride %d, %d cells; want 4, 4, 3", d.WordSize, d.Stride, len(d.Cells))
	}

	// The table: a header and one line a device.
	r = mustOK(t, nv(t, "ls", "-m", mnt))
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "NAME") {
		t.Errorf("ls: want a header and 6 lines, got %q", r.stdout)
	}
	for name := range want {
		wantContains(t, "ls", r.stdout, name)
	}
}

// 2. A file device: dd, cmp, writes visible in the image at once, and
// `printf hello > nvmem` overwrites without truncating.
//
// --device keeps the commas of its SPEC (App.DisableSliceFlagSeparator).
func TestFileDeviceReadWrite(t *testing.T) {
	requireFUSE(t)
	const size = 8192
	img := writeFile(t, t.TempDir(), "x.bin", pattern(size, 0x5a))
	mnt := mountNV(t, "--device", "file:"+img+",name=x")
	nvm := filepath.Join(mnt, "x", "nvmem")

	mustOK(t, runCmd(t, cmdOpts{}, "dd", "if=/dev/urandom", "of="+nvm, "bs=512", "count=8", "conv=notrunc", "status=none"))
	// The write reached the image before dd's write returned.
	image := readFile(t, img)
	if len(image) != size {
		t.Fatalf("image size %d after dd, want %d", len(image), size)
	}
	if bytes.Equal(image[:4096], pattern(size, 0x5a)[:4096]) {
		t.Errorf("the image's first 4096 bytes did not change after dd")
	}
	if !bytes.Equal(image[4096:], pattern(size, 0x5a)[4096:]) {
		t.Errorf("dd of 4096 bytes changed the image past byte 4096")
	}
	if got := readFile(t, nvm); !bytes.Equal(got, image) {
		t.Errorf("nvmem and the image differ after dd")
	}
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", nvm, img))

	// O_TRUNC is ignored: the first five bytes change, the rest stays.
	before := image
	mustOK(t, runCmd(t, cmdOpts{}, "sh", "-c", `printf hello > "$1"`, "sh", nvm))
	fi, err := os.Stat(nvm)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Errorf("nvmem size %d after printf >, want %d", fi.Size(), size)
	}
	want := append([]byte("hello"), before[5:]...)
	if got := readFile(t, nvm); !bytes.Equal(got, want) {
		t.Errorf("nvmem after printf hello >: first bytes %q, len %d; want %q and the rest unchanged", got[:min(8, len(got))], len(got), want[:8])
	}
	if got := readFile(t, img); !bytes.Equal(got, want) {
		t.Errorf("image after printf hello >: len %d, first bytes %q; want %d bytes starting %q", len(got), got[:min(8, len(got))], size, want[:8])
	}
}

// 3. attach and detach at run time.
func TestAttachDetach(t *testing.T) {
	requireFUSE(t)
	imgs := t.TempDir()
	a := writeFile(t, imgs, "a.bin", pattern(512, 1))
	bData := pattern(1024, 2)
	b := writeFile(t, imgs, "b.bin", bData)
	other := writeFile(t, imgs, "other.bin", pattern(256, 3))
	mnt := mountNV(t)

	if devs := lsJSON(t, cmdOpts{}, "-m", mnt); len(devs) != 0 {
		t.Errorf("a mount without devices lists %v", devs)
	}

	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+a+",name=dev-a", "file:"+b+",name=dev-b"))
	devs := lsJSON(t, cmdOpts{}, "-m", mnt)
	if len(devs) != 2 || devs["dev-a"].Size != 512 || devs["dev-b"].Size != 1024 {
		t.Errorf("after attach, ls --json = %+v; want dev-a (512 bytes) and dev-b (1024)", devs)
	}
	wantContains(t, "ls", mustOK(t, nv(t, "ls", "-m", mnt)).stdout, "dev-a", "dev-b")
	if got := readDirNames(t, mnt); !slices.Equal(got, []string{"dev-a", "dev-b"}) {
		t.Errorf("root lists %q after attach", got)
	}
	// Look the device up, so the kernel has it cached when it goes.
	if _, err := os.Stat(filepath.Join(mnt, "dev-a", "nvmem")); err != nil {
		t.Fatal(err)
	}

	mustOK(t, nv(t, "detach", "-m", mnt, "dev-a"))
	devs = lsJSON(t, cmdOpts{}, "-m", mnt)
	if _, ok := devs["dev-a"]; ok || len(devs) != 1 {
		t.Errorf("after detach dev-a, ls --json = %+v", devs)
	}
	if got := readDirNames(t, mnt); !slices.Equal(got, []string{"dev-b"}) {
		t.Errorf("root lists %q after detach dev-a", got)
	}
	for _, p := range []string{"dev-a", "dev-a/nvmem"} {
		if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("stat %s after detach: %v, want ENOENT", p, err)
		}
	}
	if got := readFile(t, filepath.Join(mnt, "dev-b", "nvmem")); !bytes.Equal(got, bData) {
		t.Errorf("dev-b reads wrong data after detaching dev-a")
	}

	// Unknown names.
	stderr := mustFail(t, nv(t, "detach", "-m", mnt, "no-such-dev"))
	wantContains(t, "detach of an unknown name", stderr, "no-such-dev")

	// A missing image.
	stderr = mustFail(t, nv(t, "attach", "-m", mnt, "file:/nope.bin"))
	wantContains(t, "attach of a missing image", stderr, "attach file:/nope.bin: open /nope.bin: no such file or directory")

	// A duplicate name: refused, naming the name outside the SPEC's own text,
	// and the device already there is untouched.
	dup := "file:" + other + ",name=dev-b"
	stderr = mustFail(t, nv(t, "attach", "-m", mnt, dup))
	wantContains(t, "attach of a duplicate name (SPEC text removed)", strings.ReplaceAll(stderr, dup, ""), "dev-b")
	if got := readFile(t, filepath.Join(mnt, "dev-b", "nvmem")); !bytes.Equal(got, bData) {
		t.Errorf("a refused duplicate changed what dev-b reads")
	}

	// One request, one good and one bad SPEC: the good one is attached, the
	// command still fails and names the bad one.
	r := nv(t, "attach", "-m", mnt, "file:"+other+",name=dev-c", "file:/nope2.bin,name=dev-d")
	wantContains(t, "attach of a good and a bad SPEC", mustFail(t, r), "/nope2.bin")
	devs = lsJSON(t, cmdOpts{}, "-m", mnt)
	if _, ok := devs["dev-c"]; !ok {
		t.Errorf("the good SPEC of a partly failed attach is missing: %+v", devs)
	}
	if _, ok := devs["dev-d"]; ok {
		t.Errorf("the bad SPEC of a partly failed attach is listed")
	}

	// Relative image paths are taken from the caller's working folder (the
	// test's own folder has no such file).
	relData := pattern(300, 9)
	writeFile(t, imgs, "relative-image.bin", relData)
	mustOK(t, runCmd(t, cmdOpts{dir: imgs}, nvmemfsBin, "attach", "-m", mnt, "file:relative-image.bin,name=rel"))
	if got := readFile(t, filepath.Join(mnt, "rel", "nvmem")); !bytes.Equal(got, relData) {
		t.Errorf("the relatively named image reads %d bytes that differ from %s", len(got), filepath.Join(imgs, "relative-image.bin"))
	}
	// ... and a relative mountpoint from the caller's folder too.
	mustOK(t, runCmd(t, cmdOpts{dir: filepath.Dir(mnt)}, nvmemfsBin, "detach", "-m", filepath.Base(mnt), "rel"))
	if _, err := os.Stat(filepath.Join(mnt, "rel")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat rel after detach through a relative mountpoint: %v, want ENOENT", err)
	}
}

// 4. Bad inputs are refused with messages that point at the mistake.
func TestBadInputs(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img.bin", pattern(256, 4))

	t.Run("config bad line", func(t *testing.T) {
		conf := writeFile(t, dir, "bad.conf", []byte("# a comment\nfile:img.bin,name=good\n\nfile:img.bin,name=bad,bogus=1\n"))
		stderr := mountFails(t, t.TempDir(), "--config", conf)
		wantContains(t, "mount --config", stderr, conf+":4:", "bogus")
	})

	t.Run("config missing image", func(t *testing.T) {
		// Parsed fine; fails at attach, after the FUSE mount is up: the
		// mount must be taken down again.
		conf := writeFile(t, dir, "missing.conf", []byte("file:img.bin,name=one\nfile:missing.bin,name=two\n"))
		stderr := mountFails(t, t.TempDir(), "--config", conf)
		wantContains(t, "mount --config with a missing image", stderr, filepath.Join(dir, "missing.bin"), "no such file or directory")
	})

	t.Run("cells bad line", func(t *testing.T) {
		cells := writeFile(t, dir, "bad.cells", []byte("# NAME OFFSET BYTES\ngood 0 4\nbad zz 4\n"))
		conf := writeFile(t, dir, "cells.conf", []byte("file:img.bin,name=c,cells=bad.cells\n"))
		stderr := mountFails(t, t.TempDir(), "--config", conf)
		wantContains(t, "mount --config with a bad cells file", stderr, cells+":3:", `"zz"`, conf+":1:")

		mnt := mountNV(t)
		stderr = mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",cells="+cells))
		wantContains(t, "attach with a bad cells file", stderr, cells+":3:", `"zz"`)
	})

	t.Run("cell past the end", func(t *testing.T) {
		cells := writeFile(t, dir, "big.cells", []byte("good 0 4\n\nbig 0xfe 4\n"))
		mnt := mountNV(t)
		stderr := mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=big,cells="+cells))
		wantContains(t, "attach with a cell past the end", stderr, cells+":3:")
		if devs := lsJSON(t, cmdOpts{}, "-m", mnt); len(devs) != 0 {
			t.Errorf("a refused device is listed: %+v", devs)
		}
	})

	for _, tc := range []struct {
		name, opt string
		want      []string
	}{
		{"unknown option", "colour=red", []string{`unknown option "colour"`}},
		{"bad number", "size=12k", []string{`"12k" is not a number`}},
		{"negative number", "offset=-1", []string{`"-1" is not a number`}},
		{"flag with a value", "ro=1", []string{`"ro" takes no value`}},
	} {
		t.Run(tc.name+" attach", func(t *testing.T) {
			mnt := mountNV(t)
			sp := "file:" + img + ",name=x," + tc.opt
			stderr := mustFail(t, nv(t, "attach", "-m", mnt, sp))
			wantContains(t, "attach "+sp, stderr, tc.want...)
		})
		t.Run(tc.name+" mount --device", func(t *testing.T) {
			sp := "file:" + img + ",name=x," + tc.opt
			stderr := mountFails(t, t.TempDir(), "--device", sp)
			wantContains(t, "mount --device "+sp, stderr, tc.want...)
		})
	}

	t.Run("unknown kind", func(t *testing.T) {
		stderr := mountFails(t, t.TempDir(), "--device", "flash:"+img)
		wantContains(t, "mount --device flash:...", stderr, `unknown kind "flash"`)
	})

	// mount(2) failing would fall back to fusermount, whose message is
	// lost: the folder is checked first.
	t.Run("missing mountpoint", func(t *testing.T) {
		mnt := filepath.Join(t.TempDir(), "missing")
		stderr := mountFails(t, mnt, "--demo")
		wantContains(t, "mount on a missing folder", stderr, mnt, "no such file or directory")
	})

	t.Run("mountpoint count", func(t *testing.T) {
		stderr := mustFail(t, nv(t, "mount", "--demo"))
		wantContains(t, "mount without a mountpoint", stderr, "MOUNTPOINT")
	})
}

// 5a. unmount removes the mount and stops the server.
func TestUnmount(t *testing.T) {
	mnt := mountNV(t, "--demo")
	if len(serverPIDs(t, mnt)) != 1 {
		t.Errorf("want one server for %s, found %v", mnt, serverPIDs(t, mnt))
	}
	mustOK(t, nv(t, "unmount", mnt))
	if isMounted(t, mnt) {
		t.Errorf("%s is still in /proc/mounts after unmount returned", mnt)
	}
	if r := waitSocketGone(t, mnt, 10*time.Second); r.code == 0 {
		t.Errorf("the server still answers 10 s after unmount: %v", r)
	} else {
		wantContains(t, "ls after unmount", r.stderr, "no nvmemfs server for "+mnt)
	}
	if pids := waitServerGone(t, mnt, 10*time.Second); len(pids) > 0 {
		t.Errorf("server processes %v still run after unmount", pids)
	}
	// A second unmount has nobody to talk to.
	mustFail(t, nv(t, "unmount", mnt))
}

// 5b. unmount with a descriptor still open: detached lazily, and the
// descriptor fails from then on.
func TestUnmountBusy(t *testing.T) {
	requireFUSE(t)
	data := pattern(4096, 6)
	img := writeFile(t, t.TempDir(), "x.bin", data)
	mnt := mountImages(t, "file:"+img+",name=x")

	f, err := os.Open(filepath.Join(mnt, "x", "nvmem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	if n, err := unix.Pread(int(f.Fd()), buf, 0); err != nil || !bytes.Equal(buf[:n], data[:64]) {
		t.Fatalf("pread before unmount: %d, %v", n, err)
	}

	mustOK(t, nv(t, "unmount", mnt))
	if isMounted(t, mnt) {
		t.Errorf("%s is still in /proc/mounts after unmount with a busy descriptor", mnt)
	}
	n, err := unix.Pread(int(f.Fd()), buf, 0)
	switch {
	case err == nil:
		t.Errorf("pread on a descriptor opened before unmount: %d bytes, no error; want ENODEV or ENOTCONN", n)
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENOTCONN):
		t.Logf("pread after a lazy unmount: %v (errno %d)", err, err.(syscall.Errno))
	default:
		t.Errorf("pread after a lazy unmount: %v; want ENODEV or ENOTCONN", err)
	}
	if _, err := unix.Pwrite(int(f.Fd()), []byte{1}, 0); err == nil {
		t.Errorf("pwrite on a read-only descriptor after unmount succeeded")
	}
	f.Close()

	// Once the last descriptor is gone, so is the server.
	if pids := waitServerGone(t, mnt, 10*time.Second); len(pids) > 0 {
		t.Errorf("server processes %v still run after the last descriptor closed", pids)
	}
	if r := waitSocketGone(t, mnt, 5*time.Second); r.code == 0 {
		t.Errorf("the server still answers after the last descriptor closed: %v", r)
	}
	if got := readFile(t, img); !bytes.Equal(got, data) {
		t.Errorf("the image changed")
	}
}

// After `nvmemfs unmount` detached a busy mount lazily, the old server
// lives on (answering ENODEV) until the last descriptor closes, but it must
// let go of the mountpoint's control socket at once: `ls` no longer reaches
// it, and a new `nvmemfs mount` on the same folder works. (Before 787c475 the
// socket lingered and the new mount failed with "another nvmemfs server
// already serves ...".)
func TestUnmountBusyReleasesMountpoint(t *testing.T) {
	requireFUSE(t)
	img := writeFile(t, t.TempDir(), "x.bin", pattern(512, 7))
	mnt := mountImages(t, "file:"+img+",name=x")
	f, err := os.Open(filepath.Join(mnt, "x", "nvmem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mustOK(t, nv(t, "unmount", mnt))

	if r := nv(t, "ls", "-m", mnt); r.code == 0 {
		t.Errorf("the unmounted server still answers on its socket while a descriptor is open: %v", r)
	}
	// Mounting again at the same place must work.
	r := nv(t, "mount", "--demo", mnt)
	if r.code != 0 {
		t.Errorf("mount again after a lazy unmount: %v", r)
	} else if got := readDirNames(t, mnt); len(got) != 6 {
		t.Errorf("the new mount lists %q", got)
	}
	f.Close()
}

// 5c. A plain umount(8) from outside: the server notices, drains its
// devices and exits, and the image keeps what was written.
func TestOutsideUmount(t *testing.T) {
	requireFUSE(t)
	img := writeFile(t, t.TempDir(), "x.bin", pattern(1024, 13))
	mnt := mountImages(t, "file:"+img+",name=x")
	mustOK(t, runCmd(t, cmdOpts{}, "dd", "if=/dev/zero", "of="+filepath.Join(mnt, "x", "nvmem"), "bs=16", "count=1", "conv=notrunc", "status=none"))

	mustOK(t, runCmd(t, cmdOpts{}, "umount", mnt))
	if isMounted(t, mnt) {
		t.Errorf("%s still mounted after umount", mnt)
	}
	if pids := waitServerGone(t, mnt, 10*time.Second); len(pids) > 0 {
		t.Errorf("server processes %v still run after an outside umount", pids)
	}
	if r := waitSocketGone(t, mnt, 5*time.Second); r.code == 0 {
		t.Errorf("the server still answers after an outside umount: %v", r)
	}
	want := append(make([]byte, 16), pattern(1024, 13)[16:]...)
	if got := readFile(t, img); !bytes.Equal(got, want) {
		t.Errorf("the image does not hold the write made before umount")
	}
}

// 6. NVMEMFS_MOUNT selects the mountpoint of ls, attach and detach.
func TestMountEnv(t *testing.T) {
	requireFUSE(t)
	data := pattern(128, 8)
	img := writeFile(t, t.TempDir(), "e.bin", data)
	elsewhere := t.TempDir() // not a mountpoint
	mnt := mountNV(t)
	env := cmdOpts{env: []string{"NVMEMFS_MOUNT=" + mnt}}

	mustOK(t, runCmd(t, env, nvmemfsBin, "attach", "file:"+img+",name=e"))
	if got := readFile(t, filepath.Join(mnt, "e", "nvmem")); !bytes.Equal(got, data) {
		t.Errorf("the device attached through NVMEMFS_MOUNT reads wrong data")
	}
	if devs := lsJSON(t, env); len(devs) != 1 || devs["e"].Size != 128 {
		t.Errorf("ls through NVMEMFS_MOUNT = %+v", devs)
	}
	wantContains(t, "ls through NVMEMFS_MOUNT", mustOK(t, runCmd(t, env, nvmemfsBin, "ls")).stdout, "e ")

	// The variable is what selects the mount: pointed elsewhere, ls fails
	// and names that folder; -m still wins over it.
	other := cmdOpts{env: []string{"NVMEMFS_MOUNT=" + elsewhere}}
	r := runCmd(t, other, nvmemfsBin, "ls")
	wantContains(t, "ls with NVMEMFS_MOUNT on a plain folder", mustFail(t, r), elsewhere)
	if devs := lsJSON(t, other, "-m", mnt); len(devs) != 1 {
		t.Errorf("-m did not override NVMEMFS_MOUNT: %+v", devs)
	}

	mustOK(t, runCmd(t, env, nvmemfsBin, "detach", "e"))
	if devs := lsJSON(t, env); len(devs) != 0 {
		t.Errorf("after detach through NVMEMFS_MOUNT, ls = %+v", devs)
	}
	if _, err := os.Stat(filepath.Join(mnt, "e")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat e after detach: %v, want ENOENT", err)
	}
}

// 7. Read-only and root-only devices: modes by stat, and EACCES on opening
// a file without a write bit for writing, root included.
func TestReadOnlyAndRootOnly(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	roData := pattern(256, 10)
	ro := writeFile(t, dir, "ro.bin", roData)
	rootOnly := writeFile(t, dir, "rootonly.bin", pattern(256, 11))
	both := writeFile(t, dir, "both.bin", pattern(256, 12))
	mnt := mountImages(t,
		"file:"+ro+",name=ro,ro",
		"file:"+rootOnly+",name=rootonly,root-only",
		"file:"+both+",name=both,ro,root-only",
	)
	if os.Geteuid() != 0 {
		t.Logf("not root (euid %d): EACCES below is the ordinary permission check, not the open handler's", os.Geteuid())
	}

	devs := lsJSON(t, cmdOpts{}, "-m", mnt)
	for name, want := range map[string]os.FileMode{"ro": 0o444, "rootonly": 0o600, "both": 0o400} {
		nvm := filepath.Join(mnt, name, "nvmem")
		if got := fileMode(t, nvm); got != want {
			t.Errorf("stat %s: mode %04o, want %04o", nvm, got, want)
		}
		if got := devs[name].Mode; got != fmt.Sprintf("%04o", want) {
			t.Errorf("ls --json %s: mode %s, want %04o", name, got, want)
		}
	}

	for _, name := range []string{"ro", "both"} {
		nvm := filepath.Join(mnt, name, "nvmem")
		for _, flag := range []int{unix.O_WRONLY, unix.O_RDWR, unix.O_WRONLY | unix.O_TRUNC} {
			fd, err := unix.Open(nvm, flag, 0)
			if err == nil {
				unix.Close(fd)
			}
			if !errors.Is(err, syscall.EACCES) {
				t.Errorf("open %s with flags %#o: %v, want EACCES", nvm, flag, err)
			}
		}
		// A read-only image has no writer, so no force_ro switch either.
		if _, err := os.Stat(filepath.Join(mnt, name, "force_ro")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s/force_ro: %v, want ENOENT", name, err)
		}
	}
	if got := readFile(t, filepath.Join(mnt, "ro", "nvmem")); !bytes.Equal(got, roData) {
		t.Errorf("the ro device reads wrong data")
	}
	if r := runCmd(t, cmdOpts{}, "sh", "-c", `echo x > "$1"`, "sh", filepath.Join(mnt, "ro", "nvmem")); r.code == 0 {
		t.Errorf("the shell wrote into a read-only device")
	}
	if got := readFile(t, ro); !bytes.Equal(got, roData) {
		t.Errorf("the read-only image changed")
	}

	// The root-only, writable device: root writes, the write reaches the image.
	nvm := filepath.Join(mnt, "rootonly", "nvmem")
	fd, err := unix.Open(nvm, unix.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open %s for writing: %v", nvm, err)
	}
	n, err := unix.Pwrite(fd, []byte("root"), 16)
	unix.Close(fd)
	if err != nil || n != 4 {
		t.Errorf("pwrite to %s: %d, %v", nvm, n, err)
	}
	if got := readFile(t, rootOnly); !bytes.Equal(got[16:20], []byte("root")) {
		t.Errorf("the root-only image does not hold the write: % x", got[16:20])
	}
	if _, err := os.Stat(filepath.Join(mnt, "rootonly", "force_ro")); err != nil {
		t.Errorf("rootonly/force_ro: %v", err)
	}
}
