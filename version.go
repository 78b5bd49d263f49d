package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version and commit are stamped by the release build (scripts/release):
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty) -X main.commit=$(git rev-parse HEAD)"
//
// A plain `go build` leaves them empty: the version is then "devel", and
// the commit is the one the go command embeds when it stamps version
// control information (not with GOFLAGS=-buildvcs=false, nor outside a
// checkout).
var version, commit string

// goFuseModule is the module whose version a bug report needs most: the
// FUSE protocol server's behaviour changes between its releases.
const goFuseModule = "github.com/hanwen/go-fuse/v2"

// buildVersion describes this binary. Everything but the release version
// comes from the build information the go command embeds, so it is right
// for any build of a checkout, stamped or not: the commit (with "+dirty"
// for uncommitted changes), the Go version, the port, and go-fuse's version.
type buildVersion struct {
	Version string
	Commit  string // "unknown" when built outside a git checkout or with -buildvcs=false
	Time    string // the commit's time, empty when unknown
	Go      string
	Port    string // GOOS/GOARCH, with GOARM on 32-bit ARM
	GoFuse  string
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: version, Commit: "unknown", Go: runtime.Version(),
		Port: runtime.GOOS + "/" + runtime.GOARCH, GoFuse: "unknown"}
	if v.Version == "" {
		v.Version = "devel"
	}
	if commit != "" {
		v.Commit = commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if commit == "" {
				v.Commit = s.Value
			}
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "GOARM":
			v.Port += "/v" + s.Value
		}
	}
	if dirty && commit == "" && v.Commit != "unknown" {
		v.Commit += "+dirty"
	}
	for _, dep := range info.Deps {
		if dep.Path == goFuseModule {
			v.GoFuse = dep.Version
			if dep.Replace != nil {
				v.GoFuse += " => " + dep.Replace.Path + " " + dep.Replace.Version
			}
		}
	}
	return v
}

func (v buildVersion) print(w io.Writer) {
	fmt.Fprintf(w, "nvmemfs %s\n", v.Version)
	if v.Time != "" {
		fmt.Fprintf(w, "commit  %s (%s)\n", v.Commit, v.Time)
	} else {
		fmt.Fprintf(w, "commit  %s\n", v.Commit)
	}
	fmt.Fprintf(w, "go      %s %s\n", v.Go, v.Port)
	fmt.Fprintf(w, "go-fuse %s\n", v.GoFuse)
}

// printVersion is the app's --version (and `nvmemfs version`).
func printVersion(c *cli.Context) {
	readBuildVersion().print(c.App.Writer)
}
