package layouts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The U-Boot environment (SPEC 5, u-boot-env).
//
// One copy, as U-Boot's env_t (include/env_internal.h):
//
//	single:     CRC-32 (4 bytes, little-endian) | data
//	redundant:  CRC-32 (4 bytes, little-endian) | flags (1 byte) | data
//
// The data is "name=value\0name=value\0\0" padded to the end of the copy;
// the CRC is zlib's CRC-32 (U-Boot's crc32(0, ...)) over the whole data
// area, padding included, never over the flags byte. A redundant
// environment is two copies of the same size, copy 1 at Offset (0 unless
// told) and copy 2 at Offset2, by default right after copy 1 (rounded up to
// the next erase block on flash), as fw_env.config places them with one
// line a copy.

// ErrEnvBadCRC: no copy of the environment has a good CRC. LoadEnv returns
// it together with an *Env that describes the copies, so that a caller can
// report the stored and computed CRCs and, when forced, write a new
// environment; Save refuses to write without force.
var ErrEnvBadCRC = errors.New("bad CRC")

// ErrEnvChanged: the device no longer holds what LoadEnv read (someone
// else, fw_setenv for instance, wrote to it since, or an earlier Save failed
// half-way). Save refuses to write; load the environment again.
var ErrEnvChanged = errors.New("environment changed on the device since it was read")

// EnvFlags is how the flags byte of a redundant environment tells the newer
// copy from the older one.
type EnvFlags int

const (
	// EnvFlagsCounter: the flags byte is a generation counter. Each save
	// writes the other copy with the active copy's counter plus one,
	// wrapping from 255 to 0. U-Boot writes it (env_export in
	// env/common.c) on MMC, NAND, UBI, EEPROM and the like; its NOR and SPI
	// flash drivers write ACTIVE and OBSOLETE instead, which the counter
	// rule also orders right. libubootenv uses it for files, block devices,
	// NAND and UBI (check_env_device, FLAGS_INCREMENTAL): this is what
	// fw_setenv does on an image file.
	EnvFlagsCounter EnvFlags = iota
	// EnvFlagsBoolean: the flags byte is ACTIVE (1) or OBSOLETE (0), a scheme
	// that suits NOR flash, where a byte can go from 1 to 0 without an
	// erase. Each save writes the other copy with ACTIVE, then writes
	// OBSOLETE over the old copy's flags byte (U-Boot env/flash.c and
	// env/sf.c env_*_save; libubootenv libuboot_env_store and
	// set_obsolete_flag, used when the device is an MTD NOR flash).
	EnvFlagsBoolean
)

// The values of a boolean flags byte (U-Boot include/env.h, enum
// env_redund_flags; ACTIVE_FLAG and OBSOLETE_FLAG in older trees).
const (
	envFlagObsolete byte = 0
	envFlagActive   byte = 1
)

// String returns "counter" or "boolean".
func (f EnvFlags) String() string {
	switch f {
	case EnvFlagsCounter:
		return "counter"
	case EnvFlagsBoolean:
		return "boolean"
	}
	return fmt.Sprintf("EnvFlags(%d)", int(f))
}

const (
	// envMaxSize bounds a copy, so that a wrong size or a fuzzed device
	// cannot make LoadEnv allocate without limit. U-Boot environments are a
	// few KiB to a few hundred KiB.
	envMaxSize = 16 << 20
	// envAutoMin is the smallest size AutoSize and EnvDetect try (besides
	// the whole device, which may be smaller).
	envAutoMin = 256
)

// EnvConfig says where the environment is and how it is kept.
type EnvConfig struct {
	// Size is the size of one copy, header included (U-Boot's
	// CONFIG_ENV_SIZE; the size column of fw_env.config). 0 means the rest
	// of the device from Offset, or half of it when Redundant (in whole
	// erase blocks on flash), or the room between the two offsets.
	Size int64
	// Redundant: two copies of Size bytes, each with a flags byte after its
	// CRC.
	Redundant bool
	// Offset is where copy 1 (the only copy of a single environment)
	// starts in the device: the SPEC's env-offset, U-Boot's
	// CONFIG_ENV_OFFSET. Default 0.
	Offset int64
	// Offset2 is where copy 2 starts when Offset2Set (env-offset2,
	// CONFIG_ENV_OFFSET_REDUND). Otherwise copy 2 follows copy 1 at
	// Offset+Size, rounded up to the next erase block when EraseSize is set.
	Offset2    int64
	Offset2Set bool
	// EraseSize is the erase block of a flash device (MEMGETINFO's
	// erasesize), 0 for memories written in place (files, EEPROMs). On
	// flash each copy must start on an erase block and no two copies may
	// share one, or erasing one copy for a save would wipe part of the
	// other; and Save orders its writes so that each costs only the erases
	// it needs.
	EraseSize int64
	// Flags is how a redundant environment's flags byte is kept.
	Flags EnvFlags
	// AutoSize finds the copy size by trying sizes against the CRC: Size
	// first when it is set, then the powers of two from 256 bytes up to the
	// device size (half of it when Redundant), then that limit itself. A
	// wrong size is the common cause of "bad CRC" reports.
	AutoSize bool
}

func (c EnvConfig) name() string {
	if c.Redundant {
		return "u-boot-env-redundant"
	}
	return "u-boot-env"
}

func (c EnvConfig) copies() int {
	if c.Redundant {
		return 2
	}
	return 1
}

// header is the size of a copy's header: the CRC, and the flags byte when
// redundant.
func (c EnvConfig) header() int {
	if c.Redundant {
		return 5
	}
	return 4
}

// limit is the largest copy size the device can hold at the configured
// offsets. It is negative when an offset is outside the device.
func (c EnvConfig) limit(devSize int64) int64 {
	o := c.Offset
	switch {
	case !c.Redundant:
		return devSize - o
	case c.Offset2Set && c.Offset2 >= o:
		return min(c.Offset2-o, devSize-c.Offset2)
	case c.Offset2Set:
		return min(o-c.Offset2, devSize-o)
	case c.EraseSize > 0:
		// Copy 2 starts on the erase block after copy 1 ends: whole blocks
		// each is the most that fits.
		return (devSize - o) / (2 * c.EraseSize) * c.EraseSize
	}
	return (devSize - o) / 2
}

// offsets returns where each copy starts, for the configured Size.
func (c EnvConfig) offsets() []int64 {
	if !c.Redundant {
		return []int64{c.Offset}
	}
	if c.Offset2Set {
		return []int64{c.Offset, c.Offset2}
	}
	o2 := c.Offset + c.Size
	if es := c.EraseSize; es > 0 && o2%es != 0 {
		o2 += es - o2%es
	}
	return []int64{c.Offset, o2}
}

// placed reports whether the copies sit where they always did, copy 1 at 0
// and copy 2 right after it, so that messages about them need not name the
// offsets.
func (c EnvConfig) placed() bool {
	return c.Offset == 0 && !c.Offset2Set && (c.EraseSize == 0 || c.Size%c.EraseSize == 0)
}

// checkPlacement checks the offsets of a configuration whose Size is
// resolved: each copy inside the device, no overlap, and on flash each
// copy on its own erase blocks.
func (c EnvConfig) checkPlacement(devSize int64) error {
	name := c.name()
	off := c.offsets()
	opt := []string{"env-offset", "env-offset2"}
	if !c.Redundant {
		opt = opt[:1]
	}
	for i, o := range off {
		if o+c.Size > devSize {
			what := fmt.Sprintf("%s %#x", opt[i], o)
			if i == 1 && !c.Offset2Set {
				what = fmt.Sprintf("%s (by default right after copy 1: %#x)", opt[i], o)
			}
			return fmt.Errorf("%w: %s: the copy at %s with env-size %#x runs past the end of the device (size %#x)", nvcore.ErrInvalid, name, what, c.Size, devSize)
		}
	}
	if len(off) < 2 {
		return nil
	}
	a, b := off[0], off[1]
	if es := c.EraseSize; es > 0 {
		// First and last erase block of each copy.
		a0, a1, b0, b1 := a/es, (a+c.Size-1)/es, b/es, (b+c.Size-1)/es
		if a0 <= b1 && b0 <= a1 {
			next := (a1 + 1) * es
			return fmt.Errorf("%w: %s: the copies at env-offset %#x and env-offset2 %#x (env-size %#x) share an erase block (erase size %#x): a save of one would erase the other; put env-offset2 at %#x or beyond, on an erase block of its own",
				nvcore.ErrInvalid, name, a, b, c.Size, es, next)
		}
		return nil
	}
	if a < b+c.Size && b < a+c.Size {
		return fmt.Errorf("%w: %s: the copies at env-offset %#x and env-offset2 %#x overlap (env-size %#x): they must be at least env-size apart", nvcore.ErrInvalid, name, a, b, c.Size)
	}
	return nil
}

// resolve checks the configuration against the device and returns it with
// the size filled in (AutoSize is left to the caller).
func (c EnvConfig) resolve(devSize int64) (EnvConfig, error) {
	name := c.name()
	if devSize <= 0 {
		return c, fmt.Errorf("%w: %s: device size %d", nvcore.ErrInvalid, name, devSize)
	}
	if c.Flags != EnvFlagsCounter && c.Flags != EnvFlagsBoolean {
		return c, fmt.Errorf("%w: %s: flags %s: want counter or boolean", nvcore.ErrInvalid, name, c.Flags)
	}
	if c.Size < 0 {
		return c, fmt.Errorf("%w: %s: negative size %d", nvcore.ErrInvalid, name, c.Size)
	}
	if err := c.checkOffsets(devSize); err != nil {
		return c, err
	}
	if c.Size == 0 {
		c.Size = c.limit(devSize)
	}
	least := int64(c.header() + 1)
	switch {
	case c.Size < least:
		return c, fmt.Errorf("%w: %s: copy size %#x: a copy needs at least %d bytes (device size %#x)", nvcore.ErrInvalid, name, c.Size, least, devSize)
	case c.placed() && !c.Redundant && c.Size > devSize:
		return c, fmt.Errorf("%w: %s: env-size %#x is larger than the device (size %#x)", nvcore.ErrInvalid, name, c.Size, devSize)
	case c.placed() && c.Redundant && c.Size > devSize/2:
		return c, fmt.Errorf("%w: %s: env-size %#x: two copies of it do not fit the device (size %#x); a copy is at most half of it", nvcore.ErrInvalid, name, c.Size, devSize)
	case c.Size > envMaxSize:
		return c, fmt.Errorf("%w: %s: copy size %#x is over the %#x this tool handles; give the environment's size", nvcore.ErrTooBig, name, c.Size, envMaxSize)
	}
	return c, c.checkPlacement(devSize)
}

// checkOffsets checks what can be checked of the offsets before the size
// is known: inside the device, env-offset2 only for a redundant
// environment, and on flash on erase-block boundaries.
func (c EnvConfig) checkOffsets(devSize int64) error {
	name := c.name()
	if c.EraseSize < 0 {
		return fmt.Errorf("%w: %s: erase size %d", nvcore.ErrInvalid, name, c.EraseSize)
	}
	if c.Offset2Set && !c.Redundant {
		return fmt.Errorf("%w: %s: env-offset2 places the second copy of a redundant environment (layout=u-boot-env-redundant); a single environment has one, at env-offset", nvcore.ErrInvalid, name)
	}
	check := func(opt string, o int64) error {
		switch {
		case o < 0 || o >= devSize:
			return fmt.Errorf("%w: %s: %s %#x is outside the device (size %#x)", nvcore.ErrInvalid, name, opt, o, devSize)
		case c.EraseSize > 0 && o%c.EraseSize != 0:
			return fmt.Errorf("%w: %s: %s %#x is not on an erase-block boundary (erase size %#x): a copy must start on an erase block of its own, as fw_env.config's offsets on flash do", nvcore.ErrInvalid, name, opt, o, c.EraseSize)
		}
		return nil
	}
	if err := check("env-offset", c.Offset); err != nil {
		return err
	}
	if c.Offset2Set {
		return check("env-offset2", c.Offset2)
	}
	return nil
}

// Check says whether the configuration fits a device of devSize bytes: a
// copy holds at least its header and one byte, at most what this tool
// handles, and every copy lies inside the device. A configuration that does
// not fit is an error of the configuration, refused when the device is
// attached, not an error of the content. With AutoSize, it checks that the
// device can hold an environment at all, and that Size, when set, fits.
func (c EnvConfig) Check(devSize int64) error {
	if err := c.checkOffsets(devSize); err != nil {
		return err
	}
	if c.AutoSize {
		c.AutoSize = false
		if c.Size == 0 {
			c.Size = min(c.limit(devSize), envMaxSize)
		}
	}
	_, err := c.resolve(devSize)
	return err
}

// EnvVar is one variable.
type EnvVar struct {
	Name, Value string
	// Offset is the absolute offset of the value in the device, as of the
	// last LoadEnv or Save; Set and Unset make it -1 for every variable until
	// the next Save.
	Offset int64
}

// EnvCopy describes one copy as it was read (or as Save left it).
type EnvCopy struct {
	// Offset is where the copy starts in the device.
	Offset int64
	// OK: the stored CRC matches the computed one.
	OK bool
	// Stored is the CRC in the copy's header, Computed the CRC of its data.
	Stored, Computed uint32
	// Flags is the copy's flags byte (redundant environments only).
	Flags byte
}

// Env is an environment read from a device: its variables, and what it
// takes to write it back so that U-Boot, fw_printenv and the kernel agree.
type Env struct {
	// Config is the configuration used, with Size resolved and AutoSize off.
	Config EnvConfig
	// Vars are the variables of the active copy in stored order.
	Vars []EnvVar
	// Active is the copy the variables came from (0 or 1): the copy U-Boot
	// and libubootenv would use. Save writes the other one.
	Active int
	// Copies holds one entry per copy (two when redundant).
	Copies []EnvCopy
	// Fill pads the data area on write. LoadEnv sets 0xFF, as mkenvimage
	// does, whatever the device holds, so that a write is deterministic.
	Fill byte
}

// Valid reports whether the active copy had a good CRC: false after a
// LoadEnv that returned ErrEnvBadCRC, until a forced Save.
func (e *Env) Valid() bool { return e.active().OK }

func (e *Env) active() EnvCopy {
	if e.Active < 0 || e.Active >= len(e.Copies) {
		return EnvCopy{}
	}
	return e.Copies[e.Active]
}

// LoadEnv reads the environment: each copy once, then the active copy's
// variables.
//
// The active copy is chosen as U-Boot and libubootenv choose it (see
// envSelect). The data is read up to the first empty string ("\0\0") or the
// end of the data area; a string without '=' or with an empty name is not a
// variable and is skipped, as libubootenv's libuboot_load skips it (U-Boot's
// himport_r takes "name" as "delete name", and the kernel stops reading
// there); Save drops it, as fw_setenv and saveenv do. A variable stored
// twice is kept twice in Vars; Get returns the later one, as U-Boot does.
//
// When no copy has a good CRC, LoadEnv returns an *Env with no variables
// that describes the copies, and an error wrapping ErrEnvBadCRC. With
// AutoSize, when no size gives a good CRC, it returns a nil *Env: forcing a
// write needs an explicit size.
func LoadEnv(r io.ReaderAt, devSize int64, cfg EnvConfig) (*Env, error) {
	if !cfg.AutoSize {
		c, err := cfg.resolve(devSize)
		if err != nil {
			return nil, err
		}
		img, err := envReadCopies(r, c)
		if err != nil {
			return nil, err
		}
		return envFromImage(img, c)
	}
	auto := cfg
	auto.AutoSize, auto.Size = false, 0
	if devSize <= 0 || (cfg.Flags != EnvFlagsCounter && cfg.Flags != EnvFlagsBoolean) {
		_, err := auto.resolve(devSize) // says what is wrong
		return nil, err
	}
	if err := auto.checkOffsets(devSize); err != nil {
		return nil, err
	}
	limit := min(auto.limit(devSize), envMaxSize)
	if limit < int64(auto.header()+1) {
		return nil, fmt.Errorf("%w: %s: the device (size %#x) is too small for an environment at its offsets", nvcore.ErrInvalid, cfg.name(), devSize)
	}
	// One read covers every candidate: the copies at the largest size, or,
	// when copy 2 follows copy 1, all from copy 1 to the end of copy 2.
	widest := auto
	widest.Size = limit
	var img envImage
	var err error
	if off := widest.offsets(); auto.Redundant && !auto.Offset2Set {
		var b []byte
		b, err = envRead(r, cfg.name(), off[0], off[1]+limit-off[0])
		img = envImage{{off[0], b}}
	} else {
		img, err = envReadCopies(r, widest)
	}
	if err != nil {
		return nil, err
	}
	var tried []string
	for _, size := range envSizes(cfg.Size, limit) {
		c := auto
		c.Size = size
		if size < int64(c.header()+1) || c.checkPlacement(devSize) != nil {
			continue
		}
		tried = append(tried, fmt.Sprintf("%#x", size))
		if envAnyGood(img, c) {
			return envFromImage(img, c)
		}
	}
	return nil, &envError{
		msg: fmt.Sprintf("%s: %s: no copy size gives a good CRC (tried %s); give the size if an environment is there, and --force to write a new one", cfg.name(), ErrEnvBadCRC, strings.Join(tried, ", ")),
		err: ErrEnvBadCRC,
	}
}

// envSizes lists the sizes AutoSize tries, in order: first (when set), the
// powers of two from 256 up to limit, and limit.
func envSizes(first, limit int64) []int64 {
	var sizes []int64
	seen := map[int64]bool{}
	add := func(s int64) {
		if s > 0 && s <= limit && !seen[s] {
			seen[s] = true
			sizes = append(sizes, s)
		}
	}
	add(first)
	for s := int64(envAutoMin); s <= limit; s *= 2 {
		add(s)
	}
	add(limit)
	return sizes
}

// envRead reads n bytes at off, all of them.
func envRead(r io.ReaderAt, name string, off, n int64) ([]byte, error) {
	buf := make([]byte, n)
	m, err := r.ReadAt(buf, off)
	if m == len(buf) {
		return buf, nil // io.ReaderAt may say io.EOF with a full read
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("%s: read %#x bytes at %#x: %w", name, n, off, err)
}

// envImage holds parts of the device, each read at once.
type envImage []envPart

type envPart struct {
	off int64
	b   []byte
}

// at returns the n bytes at off, from the part that holds them.
func (m envImage) at(off, n int64) []byte {
	for _, p := range m {
		if off >= p.off && off+n <= p.off+int64(len(p.b)) {
			return p.b[off-p.off : off-p.off+n]
		}
	}
	return nil
}

// envReadCopies reads each copy of a resolved configuration.
func envReadCopies(r io.ReaderAt, c EnvConfig) (envImage, error) {
	var img envImage
	for _, off := range c.offsets() {
		b, err := envRead(r, c.name(), off, c.Size)
		if err != nil {
			return nil, err
		}
		img = append(img, envPart{off, b})
	}
	return img, nil
}

// envCheck examines copy i of a resolved configuration in img.
func envCheck(img envImage, c EnvConfig, i int) EnvCopy {
	base := c.offsets()[i]
	cp := img.at(base, c.Size)
	ec := EnvCopy{
		Offset:   base,
		Stored:   binary.LittleEndian.Uint32(cp[:4]),
		Computed: crc32.ChecksumIEEE(cp[c.header():]),
	}
	ec.OK = ec.Stored == ec.Computed
	if c.Redundant {
		ec.Flags = cp[4]
	}
	return ec
}

func envAnyGood(img envImage, c EnvConfig) bool {
	for i, off := range c.offsets() {
		if img.at(off, c.Size) != nil && envCheck(img, c, i).OK {
			return true
		}
	}
	return false
}

// envFromImage builds the Env of a resolved configuration from the bytes of
// its copies.
func envFromImage(img envImage, c EnvConfig) (*Env, error) {
	e := &Env{Config: c, Fill: 0xFF}
	var ok [2]bool
	var flags [2]byte
	for i := 0; i < c.copies(); i++ {
		ec := envCheck(img, c, i)
		e.Copies = append(e.Copies, ec)
		ok[i], flags[i] = ec.OK, ec.Flags
	}
	if c.Redundant {
		e.Active = envSelect(c.Flags, ok, flags)
	}
	if !e.Valid() {
		return e, e.badCRC()
	}
	base := e.Copies[e.Active].Offset
	hdr := int64(c.header())
	e.Vars = envParse(img.at(base, c.Size)[hdr:], base+hdr)
	return e, nil
}

// badCRC is the error for an environment with no good copy.
func (e *Env) badCRC() error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: ", e.Config.name(), ErrEnvBadCRC.Error())
	if len(e.Copies) == 1 {
		c := e.Copies[0]
		fmt.Fprintf(&b, "stored 0x%08x, computed 0x%08x", c.Stored, c.Computed)
	} else {
		for i, c := range e.Copies {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "copy %d at %#x: stored 0x%08x, computed 0x%08x", i+1, c.Offset, c.Stored, c.Computed)
		}
	}
	fmt.Fprintf(&b, " (copy size %#x; a wrong size is the usual cause: try env-size=auto)", e.Config.Size)
	return &envError{msg: b.String(), err: ErrEnvBadCRC}
}

// envError carries a full message and the sentinel it wraps, so that the
// message does not repeat the sentinel's text.
type envError struct {
	msg string
	err error
}

func (e *envError) Error() string { return e.msg }
func (e *envError) Unwrap() error { return e.err }

// envSelect picks the active copy of a redundant environment from the CRC
// results and the flags bytes, as U-Boot and libubootenv do.
//
// One good CRC: that copy. None: copy 1, as libubootenv ("ctx->current =
// 0"); U-Boot then uses its default environment.
//
// Counter, both good. U-Boot env/common.c, env_check_redund (earlier
// env_import_redund), "both ok - check serial":
//
//	if (tmp_env1->flags == 255 && tmp_env2->flags == 0)
//		gd->env_valid = ENV_REDUND;            // copy 2
//	else if (tmp_env2->flags == 255 && tmp_env1->flags == 0)
//		gd->env_valid = ENV_VALID;             // copy 1
//	else if (tmp_env1->flags > tmp_env2->flags)
//		gd->env_valid = ENV_VALID;
//	else if (tmp_env2->flags > tmp_env1->flags)
//		gd->env_valid = ENV_REDUND;
//	else /* flags are equal - almost impossible */
//		gd->env_valid = ENV_VALID;
//
// libubootenv src/uboot_env.c, libuboot_load, FLAGS_INCREMENTAL, does the
// same ("current = 1 if flags[1] > flags[0]", then "check overflow": 255
// and 0 -> the copy holding 0). So 0 beats 255: it is the generation after
// the wrap.
//
// Boolean, both good. U-Boot env/flash.c, env_flash_init: (ACTIVE,
// OBSOLETE) -> copy 1; (OBSOLETE, ACTIVE) -> copy 2; equal -> copy 1; else
// the copy whose flags byte is 0xFF (erased, never marked); other pairs are
// left undefined. libubootenv libuboot_load, FLAGS_BOOLEAN: the higher
// flags, then "if flags[1] == 0xFF current = 1, else if flags[0] == 0xFF
// current = 0". They agree but for both 0xFF, where libubootenv takes copy
// 2 and U-Boot copy 1; the bootloader wins here: copy 1. For the pairs
// U-Boot leaves undefined, libubootenv's higher flags.
func envSelect(kind EnvFlags, ok [2]bool, f [2]byte) int {
	switch {
	case ok[0] && !ok[1]:
		return 0
	case !ok[0] && ok[1]:
		return 1
	case !ok[0] && !ok[1]:
		return 0
	}
	if kind == EnvFlagsBoolean {
		switch {
		case f[0] == f[1]:
			return 0
		case f[0] == 0xFF:
			return 0
		case f[1] == 0xFF:
			return 1
		case f[1] > f[0]:
			return 1
		}
		return 0
	}
	switch {
	case f[0] == 255 && f[1] == 0:
		return 1
	case f[1] == 255 && f[0] == 0:
		return 0
	case f[1] > f[0]:
		return 1
	}
	return 0
}

// envParse reads the variables of a data area that starts at base in the
// device. It stops at the first empty string or at the end of the area; a
// last string that the area cuts off runs to the end (U-Boot's himport_r
// terminates the buffer itself).
func envParse(data []byte, base int64) []EnvVar {
	var vars []EnvVar
	for i := 0; i < len(data) && data[i] != 0; {
		n := bytes.IndexByte(data[i:], 0)
		if n < 0 {
			n = len(data) - i
		}
		s := data[i : i+n]
		if eq := bytes.IndexByte(s, '='); eq > 0 {
			vars = append(vars, EnvVar{
				Name:   string(s[:eq]),
				Value:  string(s[eq+1:]),
				Offset: base + int64(i+eq+1),
			})
		}
		i += n + 1
	}
	return vars
}

// Get returns the value of a variable; of the later one when it is stored
// twice, as U-Boot's import keeps the later.
func (e *Env) Get(name string) (string, bool) {
	for i := len(e.Vars) - 1; i >= 0; i-- {
		if e.Vars[i].Name == name {
			return e.Vars[i].Value, true
		}
	}
	return "", false
}

func envCheckName(name string) error {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return fmt.Errorf("%w: u-boot-env: variable name %q must be non-empty, without '=' or NUL", nvcore.ErrInvalid, name)
	}
	return nil
}

// Set sets a variable: in place when it exists (keeping the stored order;
// a second copy of the name is dropped), at the end otherwise. An empty
// value removes the variable, as U-Boot's setenv and fw_setenv do: U-Boot
// reads a stored "name=" as "delete name". The change reaches the device
// with Save.
func (e *Env) Set(name, value string) error {
	if err := envCheckName(name); err != nil {
		return err
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: u-boot-env: the value of %s holds a NUL byte", nvcore.ErrInvalid, name)
	}
	if value == "" {
		e.remove(name)
		return nil
	}
	found := false
	kept := e.Vars[:0]
	for _, v := range e.Vars {
		if v.Name == name {
			if found {
				continue
			}
			found = true
			v.Value = value
		}
		kept = append(kept, v)
	}
	e.Vars = kept
	if !found {
		e.Vars = append(e.Vars, EnvVar{Name: name, Value: value})
	}
	e.staleOffsets()
	return nil
}

// Unset removes a variable (every copy of the name). It fails with an error
// wrapping nvcore.ErrInvalid when there is none.
func (e *Env) Unset(name string) error {
	if err := envCheckName(name); err != nil {
		return err
	}
	if !e.remove(name) {
		return fmt.Errorf("%w: u-boot-env: no variable %s", nvcore.ErrInvalid, name)
	}
	return nil
}

func (e *Env) remove(name string) bool {
	found := false
	kept := e.Vars[:0]
	for _, v := range e.Vars {
		if v.Name == name {
			found = true
			continue
		}
		kept = append(kept, v)
	}
	clear(e.Vars[len(kept):])
	e.Vars = kept
	if found {
		e.staleOffsets()
	}
	return found
}

func (e *Env) staleOffsets() {
	for i := range e.Vars {
		e.Vars[i].Offset = -1
	}
}

// Encode returns one copy as it would be stored: CRC, the active copy's
// flags byte when redundant, the variables, the terminating empty string,
// and Fill up to the copy size. It fails with an error wrapping
// nvcore.ErrTooBig when the variables do not fit.
func (e *Env) Encode() ([]byte, error) {
	return e.image(e.active().Flags)
}

// dataLen is the number of bytes the variables take, the final NUL of the
// empty string that ends them included.
func (e *Env) dataLen() int64 {
	n := int64(1)
	for _, v := range e.Vars {
		n += int64(len(v.Name) + 1 + len(v.Value) + 1)
	}
	return n
}

func (e *Env) image(flags byte) ([]byte, error) {
	c := e.Config
	if c.Size <= int64(c.header()) || c.Size > envMaxSize {
		return nil, fmt.Errorf("%w: %s: copy size %#x out of range", nvcore.ErrInvalid, c.name(), c.Size)
	}
	room := c.Size - int64(c.header())
	if need := e.dataLen(); need > room {
		return nil, fmt.Errorf("%w: %s: the variables need %d bytes, a copy of %#x bytes holds %d", nvcore.ErrTooBig, c.name(), need, c.Size, room)
	}
	img := make([]byte, c.Size)
	p := c.header()
	for _, v := range e.Vars {
		p += copy(img[p:], v.Name)
		img[p] = '='
		p++
		p += copy(img[p:], v.Value)
		img[p] = 0
		p++
	}
	img[p] = 0
	p++
	for i := p; i < len(img); i++ {
		img[i] = e.Fill
	}
	if c.Redundant {
		img[4] = flags
	}
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[c.header():]))
	return img, nil
}

// Print writes the variables as fw_printenv does: one name=value a line,
// in stored order.
func (e *Env) Print(w io.Writer) {
	var b bytes.Buffer
	for _, v := range e.Vars {
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(v.Value)
		b.WriteByte('\n')
	}
	_, _ = w.Write(b.Bytes()) // Print has no error to return
}

// EnvDetect looks for an environment, for an "auto" layout: a single one at
// any size AutoSize would try, then a redundant one. It reads the device once
// (at most 16 MiB of it) and tries the candidates on that buffer. It
// returns a configuration with the size found (and counter flags: the flags
// kind cannot be seen in the content) and true, or false when no CRC
// matches. A redundant one's second copy, when it is found good right after
// the first, is pinned there (Offset2Set): an erase size given later must
// not move it to the next erase block, where a save would then write (and
// the placement check then says the two share an erase block). One not
// found there is left to the default, which an erase size moves to the
// next erase block, where U-Boot keeps it on NOR.
func EnvDetect(r io.ReaderAt, devSize int64) (EnvConfig, bool) {
	if devSize <= 0 {
		return EnvConfig{}, false
	}
	n := min(devSize, envMaxSize)
	b, err := envRead(r, "u-boot-env", 0, n)
	if err != nil {
		return EnvConfig{}, false
	}
	img := envImage{{0, b}}
	for _, red := range []bool{false, true} {
		c := EnvConfig{Redundant: red}
		for _, size := range envSizes(0, c.limit(n)) {
			c.Size = size
			if size >= int64(c.header()+1) && envAnyGood(img, c) {
				if red && img.at(size, size) != nil && envCheck(img, c, 1).OK {
					c.Offset2, c.Offset2Set = size, true
				}
				return c, true
			}
		}
	}
	return EnvConfig{}, false
}

// EnvOnFlash settles, on flash of erase size es, where copy 2 of a
// redundant environment found by its CRC (EnvDetect) is: right after copy
// 1, or on the next erase block, where U-Boot keeps it on NOR; the content
// shows which, by a good copy at one place and not at the other. It
// returns the configuration with copy 2 there and the erase size. Where
// the content cannot tell (good copies at both places, or at neither:
// copy 2 never written), it returns the next erase block, which reads
// copy 1 alone or as U-Boot on NOR would, and a non-nil error for writes:
// a save must not go where U-Boot may not read. A single environment, one
// on anything but flash, or copies a whole number of erase blocks long
// (both places are one), need no settling.
func EnvOnFlash(r io.ReaderAt, devSize int64, found EnvConfig, es int64) (EnvConfig, error) {
	found.EraseSize = es
	if es <= 0 || !found.Redundant || found.Size%es == 0 {
		return found, nil
	}
	next := found.Offset + found.Size
	aligned := next + es - next%es
	at := func(off int64) EnvConfig {
		c := found
		c.Offset2, c.Offset2Set = off, true
		return c
	}
	good := func(off int64) bool {
		c := at(off)
		c.EraseSize = 0
		e, _ := LoadEnv(r, devSize, c)
		return e != nil && len(e.Copies) == 2 && e.Copies[1].OK
	}
	switch adj, al := good(next), good(aligned); {
	case adj && !al:
		return at(next), nil // the placement check refuses writes there
	case al && !adj:
		return at(aligned), nil
	case adj && al:
		return at(aligned), fmt.Errorf("%w: %s: good second copies both right after the first (%#x) and on the next erase block (%#x): which one U-Boot reads cannot be told from the content; give --redundant --env-size %#x and --env-offset2 as in fw_env.config; nothing written", nvcore.ErrInvalid, found.name(), next, aligned, found.Size)
	default:
		return at(aligned), fmt.Errorf("%w: %s: no good second copy, neither right after the first (%#x) nor on the next erase block (%#x): where U-Boot reads it cannot be told from the content; give --redundant --env-size %#x and --env-offset2 as in fw_env.config; nothing written", nvcore.ErrInvalid, found.name(), next, aligned, found.Size)
	}
}

// UBootEnv is the u-boot-env layout (SPEC 5): one cell per variable of the
// active copy, at the value's offset, as long as the value. Variables with
// an empty value get no cell. "ethaddr" reads as 6 binary bytes: the kernel
// decodes that name only (drivers/nvmem/layouts/u-boot-env.c, strcmp(var,
// "ethaddr")), not eth1addr and the like.
//
// Unlike the kernel, which reads only the copy at offset 0 of a redundant
// environment, the cells come from the copy U-Boot would use.
type UBootEnv struct {
	Config EnvConfig
}

var _ nvcore.Layout = UBootEnv{}

// Name returns "u-boot-env", or "u-boot-env-redundant".
func (u UBootEnv) Name() string { return u.Config.name() }

// Cells loads the environment and returns its cells; a bad CRC means no
// cells and an error that gives both CRCs.
func (u UBootEnv) Cells(r io.ReaderAt, size int64) ([]nvcore.CellInfo, error) {
	e, err := LoadEnv(r, size, u.Config)
	if err != nil {
		return nil, err
	}
	return e.cells(u.Name()), nil
}

func (e *Env) cells(layout string) []nvcore.CellInfo {
	var cells []nvcore.CellInfo
	for _, v := range e.Vars {
		if v.Value == "" || v.Offset < 0 {
			continue
		}
		ci := nvcore.CellInfo{
			Name:   v.Name,
			Offset: v.Offset,
			Bytes:  len(v.Value),
			Layout: layout,
		}
		if v.Name == "ethaddr" {
			ci.Decode = envDecodeMAC
			ci.DecodedSize = 6
		}
		cells = append(cells, ci)
	}
	return cells
}

// envDecodeMAC turns the text of an ethaddr value, xx:xx:xx:xx:xx:xx with
// hexadecimal digits of either case (the kernel's mac_pton), into 6 bytes.
// Anything else fails with an error wrapping nvcore.ErrInvalid.
func envDecodeMAC(raw []byte) ([]byte, error) {
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("%w: ethaddr %q is not a MAC address xx:xx:xx:xx:xx:xx", nvcore.ErrInvalid, raw)
	}
	if len(raw) != 17 {
		return bad()
	}
	mac := make([]byte, 6)
	for i := range mac {
		hi, ok1 := envUnhex(raw[3*i])
		lo, ok2 := envUnhex(raw[3*i+1])
		if !ok1 || !ok2 || (i < 5 && raw[3*i+2] != ':') {
			return bad()
		}
		mac[i] = hi<<4 | lo
	}
	return mac, nil
}

func envUnhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
