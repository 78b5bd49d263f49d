package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
)

// goModVersion is the version go.mod requires of module path.
func goModVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	t.Fatalf("go.mod requires no %s", path)
	return ""
}

// TestVersionFlag runs the binary's --version: every line a bug report
// needs, and go-fuse's version as go.mod pins it.
func TestVersionFlag(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		r := runCmd(t, cmdOpts{}, nvmemfsBin, flag)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s: want 4 lines, got %q", flag, r.stdout)
		}
		// TestMain builds with a plain go build: no stamp.
		if lines[0] != "nvmemfs devel" {
			t.Errorf("%s: first line %q, want %q", flag, lines[0], "nvmemfs devel")
		}
		if !strings.HasPrefix(lines[1], "commit  ") {
			t.Errorf("%s: second line %q, want the commit", flag, lines[1])
		}
		port := runtime.GOOS + "/" + runtime.GOARCH
		if want := "go      " + runtime.Version() + " " + port; !strings.HasPrefix(lines[2], want) {
			t.Errorf("%s: third line %q, want it to start with %q", flag, lines[2], want)
		}
		if want := "go-fuse " + goModVersion(t, goFuseModule); lines[3] != want {
			t.Errorf("%s: fourth line %q, want %q", flag, lines[3], want)
		}
	}
}

// TestBuildVersionStamp: a release's stamp wins over what the go command
// embedded, and an unstamped build says "devel".
func TestBuildVersionStamp(t *testing.T) {
	if v := readBuildVersion(); v.Version != "devel" {
		t.Errorf("unstamped version %q, want devel", v.Version)
	}
	version, commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	t.Cleanup(func() { version, commit = "", "" })
	v := readBuildVersion()
	if v.Version != "v1.2.3" || v.Commit != commit {
		t.Errorf("stamped: got %q %q", v.Version, v.Commit)
	}
	var out strings.Builder
	v.print(&out)
	if !strings.HasPrefix(out.String(), "nvmemfs v1.2.3\ncommit  "+commit) {
		t.Errorf("printed %q", out.String())
	}
}
