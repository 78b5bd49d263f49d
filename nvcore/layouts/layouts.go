package layouts

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Names are the layouts a SPEC may name (layout=NAME). "fixed" is the
// kernel's fixed-layout: the cells the user declares, and nothing found in
// the content.
var Names = []string{"onie-tlv", "u-boot-env", "u-boot-env-redundant", "sl28vpd", "fixed", "auto"}

// New returns the layout of that name, or nil for "" and "fixed" (the
// declared cells are all the device has). env configures the U-Boot
// environment layouts and the environments auto finds; its Redundant is set
// from the name.
func New(name string, env EnvConfig) (nvcore.Layout, error) {
	switch name {
	case "", "fixed":
		return nil, nil
	case "onie-tlv":
		return ONIETLV{}, nil
	case "sl28vpd":
		return SL28VPD{}, nil
	case "u-boot-env":
		env.Redundant = false
		return UBootEnv{Config: env}, nil
	case "u-boot-env-redundant":
		env.Redundant = true
		return UBootEnv{Config: env}, nil
	case "auto":
		return &Auto{Env: env}, nil
	}
	return nil, fmt.Errorf("%w: unknown layout %q (known: %s)", nvcore.ErrInvalid, name, strings.Join(Names, ", "))
}

// Check says whether the layout's options fit a device of devSize bytes,
// so that a SPEC whose env-size the device cannot hold is refused at
// attach. With auto, an env-size is tried as a single copy first, so it
// must fit the device.
func Check(name string, env EnvConfig, devSize int64) error {
	switch name {
	case "u-boot-env":
		env.Redundant = false
	case "u-boot-env-redundant":
		env.Redundant = true
	case "auto":
		if env.Size == 0 {
			return nil
		}
		env.Redundant, env.AutoSize = false, false
	default:
		return nil
	}
	return env.Check(devSize)
}

// ParseEnvFlags reads the env-flags option: counter or boolean.
func ParseEnvFlags(s string) (EnvFlags, error) {
	switch s {
	case "counter":
		return EnvFlagsCounter, nil
	case "boolean":
		return EnvFlagsBoolean, nil
	}
	return 0, fmt.Errorf("%w: env-flags %q: want counter or boolean", nvcore.ErrInvalid, s)
}

// Auto recognises a layout by its signature and checksum each time it
// parses: a TlvInfo header, an sl28 VPD block, or a U-Boot environment
// (single or redundant) whose CRC matches at some copy size.
type Auto struct {
	// Env is used when the content is a U-Boot environment; its Size, when
	// not zero, is tried first.
	Env EnvConfig

	// last is the layout found at the previous parse, tried first: a
	// U-Boot environment is found by checksumming candidate sizes over the
	// whole device, seconds of bus time on an EEPROM.
	mu   sync.Mutex
	last nvcore.Layout
}

// Name is "auto".
func (*Auto) Name() string { return "auto" }

// Detect returns the layout that parses the content, or an error that says
// what each candidate found wrong.
func (a *Auto) Detect(r io.ReaderAt, size int64) (nvcore.Layout, error) {
	head := make([]byte, min(size, 24))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case ONIEDetect(head):
		return ONIETLV{}, nil
	case SL28Detect(head):
		return SL28VPD{}, nil
	}
	if a.Env.Size != 0 {
		for _, redundant := range []bool{false, true} {
			cfg := a.Env
			cfg.Redundant = redundant
			if _, err := LoadEnv(r, size, cfg); err == nil {
				return UBootEnv{Config: cfg}, nil
			}
		}
	}
	if cfg, ok := EnvDetect(r, size); ok {
		cfg.Flags = a.Env.Flags
		// On flash, copy 2 where the content shows it (on NOR, often the
		// next erase block). The layout only reads, which needs no erase
		// size once the places are fixed.
		cfg, _ = EnvOnFlash(r, size, cfg, a.Env.EraseSize)
		cfg.EraseSize = 0
		return UBootEnv{Config: cfg}, nil
	}
	return nil, errors.New("auto: no known layout: no TlvInfo header, no sl28 VPD block, no U-Boot environment with a matching CRC")
}

// Cells lets the layout found last parse, or detects the layout anew.
func (a *Auto) Cells(r io.ReaderAt, size int64) ([]nvcore.CellInfo, error) {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	if last != nil {
		if cells, err := last.Cells(r, size); err == nil {
			return cells, nil
		}
	}
	l, err := a.Detect(r, size)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.last = l
	a.mu.Unlock()
	return l.Cells(r, size)
}
