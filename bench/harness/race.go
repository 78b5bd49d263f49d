//go:build race

package main

// raceEnabled: this program was built with -race, so the nvmemfs binary of
// the scale figure is too, which reuses the race-built packages already in
// the build cache (go test -race builds them) instead of compiling every
// package again.
const raceEnabled = true
