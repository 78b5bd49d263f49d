package layouts

import (
	"bytes"
	"fmt"
	"io"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// EnvWriter is the device an environment is saved to: Save reads it to
// check that it still holds what LoadEnv saw, writes it, and reads back
// what it wrote. When it also has a Sync() error method (an *os.File), Save
// calls it before and after the write that makes the new copy the active
// one, so that the writes reach the medium in the order below.
type EnvWriter interface {
	io.ReaderAt
	io.WriterAt
}

// Save writes the environment to the device.
//
// It refuses, with an error wrapping ErrEnvBadCRC, when LoadEnv found no
// good copy, unless force is set: it never puts a new environment over one
// it could not read unless told to (fw_setenv's habit of replacing a
// corrupt environment with defaults loses serial numbers and MAC
// addresses). It refuses, with an error wrapping ErrEnvChanged, when the
// device no longer holds what LoadEnv read.
//
// It writes only the bytes that change, in an order that makes a power cut
// at any byte harmless as far as the format allows:
//
// Redundant: the new content goes to the inactive copy. First its data
// area, then its CRC: until both are complete, that copy either has a bad
// CRC or still holds its own older content with its old flags, which lost
// to the active copy when it was loaded and still loses, so U-Boot,
// libubootenv and LoadEnv all read the old environment. Once data and CRC
// are in, the copy is a complete new environment, so whichever copy wins
// from then on, the environment read is exactly the old or exactly the new
// one. Last, the flags byte, the commit: counter media get the active
// copy's counter plus one (255 wraps to 0, which U-Boot and libubootenv
// rank above 255); boolean media get ACTIVE (1) in the new copy and then
// OBSOLETE (0) in the old copy's flags byte, as U-Boot's env/flash.c and
// libubootenv's set_obsolete_flag do. Writing the flags byte before the
// data would be wrong: the CRC does not cover it, so an older copy that is
// still intact would be promoted over the active one.
//
// Flash (EraseSize set): a write that raises a bit erases the whole erase
// blocks it touches. When the new copy's header needs such an erase, the
// old content of the header's block is lost to that erase whatever the
// order, so the copy is written in one write, header and flags included:
// each erase block of the copy is erased at most once, only when one of
// its bits must rise, and programmed once; the copy's CRC matches only when
// the last block is in. Otherwise (the header only clears bits, as on a
// blank copy) the order above holds, and costs only the erases of the data
// blocks that need one. Marking the old copy OBSOLETE clears bits: no
// erase. The active copy is never written before the new one reads back
// complete, and then only its flags byte, from ACTIVE (or 0xFF) to 0.
//
// Single copy: there is one copy, so no order protects it. Save writes the
// changed data bytes, then the CRC. A power cut before the first changed
// byte leaves the old environment; after the CRC, the new one; in between,
// the copy has a bad CRC: U-Boot then boots with its built-in default
// environment (losing, for instance, the MAC address), LoadEnv reports
// ErrEnvBadCRC and Save refuses to write without force. What a single copy
// does promise is that a torn write is detected, never read as a wrong
// environment (short of a CRC-32 collision).
//
// Save reads back the new copy before committing it and fails, with an
// error wrapping nvcore.ErrIO, when the device did not keep what was
// written (a write-protected EEPROM acknowledges writes and ignores them).
// On success e describes the device: the active copy, its CRC and flags,
// and the variables' offsets. On failure e is left as it was and the device
// may hold part of the write; load the environment again before retrying.
func (e *Env) Save(w EnvWriter, force bool) error {
	c := e.Config
	name := c.name()
	if len(e.Copies) != c.copies() || e.Active < 0 || e.Active >= len(e.Copies) {
		return fmt.Errorf("%w: %s: this Env was not made by LoadEnv", nvcore.ErrInvalid, name)
	}
	if !e.Valid() && !force {
		return &envError{
			msg: fmt.Sprintf("%s: refusing to write over an environment that could not be read (%v); use --force to replace it", name, e.badCRC()),
			err: ErrEnvBadCRC,
		}
	}
	target := 0
	var flags byte
	if c.Redundant {
		target = 1 - e.Active
		switch c.Flags {
		case EnvFlagsCounter:
			flags = e.Copies[e.Active].Flags + 1 // wraps 255 -> 0
		case EnvFlagsBoolean:
			flags = envFlagActive
		}
	}
	img, err := e.image(flags)
	if err != nil {
		return err
	}

	// The device must still hold what LoadEnv read.
	cur, err := envReadCopies(w, c)
	if err != nil {
		return err
	}
	for i := range e.Copies {
		if envCheck(cur, c, i) != e.Copies[i] {
			return fmt.Errorf("%w: %s: copy %d at %#x", ErrEnvChanged, name, i+1, e.Copies[i].Offset)
		}
	}

	base := c.offsets()[target]
	old := cur.at(base, c.Size)
	hdr := c.header()
	if c.EraseSize > 0 && envHeaderErased(old, img, base, c.EraseSize) {
		// Flash, and the new header needs a bit raised: the erase block
		// that holds it is erased whatever the order, and with it the old
		// content of that block. Nothing of the older copy survives to be
		// promoted by a flags byte written early, so the whole copy goes
		// in one write: each of its erase blocks erased once (only those
		// where a bit must rise) and programmed once, the header's block
		// first. Until the last block is programmed the copy's CRC does
		// not match; then it is complete, flags included. Written in
		// steps, the header's block would be erased for each. (A single
		// copy is lost either way until the write completes.)
		if lo, hi := envDiff(old, img); lo < hi {
			if err := envWrite(w, name, img[lo:hi], base+int64(lo)); err != nil {
				return err
			}
		}
	} else {
		// 1. The data area, the changed bytes only.
		if lo, hi := envDiff(old[hdr:], img[hdr:]); lo < hi {
			if err := envWrite(w, name, img[hdr+lo:hdr+hi], base+int64(hdr+lo)); err != nil {
				return err
			}
		}
		// 2. The CRC.
		if !bytes.Equal(old[:4], img[:4]) {
			if err := envWrite(w, name, img[:4], base); err != nil {
				return err
			}
		}
	}
	if err := envSync(w, name); err != nil {
		return err
	}
	back, err := envRead(w, name, base, c.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(back[:4], img[:4]) || !bytes.Equal(back[hdr:], img[hdr:]) {
		return fmt.Errorf("%w: %s: copy %d at %#x reads back other than written (write-protected?)", nvcore.ErrIO, name, target+1, base)
	}
	if c.Redundant {
		// 3. The commit: the new copy's flags byte.
		if back[4] != flags {
			if err := envWrite(w, name, []byte{flags}, base+4); err != nil {
				return err
			}
		}
		// 4. Boolean media: the old copy becomes OBSOLETE.
		act := e.Copies[e.Active].Offset
		if c.Flags == EnvFlagsBoolean && cur.at(act+4, 1)[0] != envFlagObsolete {
			if err := envWrite(w, name, []byte{envFlagObsolete}, act+4); err != nil {
				return err
			}
		}
		if err := envSync(w, name); err != nil {
			return err
		}
		if err := e.checkFlags(w, base, flags, act); err != nil {
			return err
		}
	}

	// e now describes the device.
	sum := envCheck(envImage{{base, img}}, EnvConfig{Size: c.Size, Redundant: c.Redundant, Offset: base}, 0)
	e.Copies[target] = sum
	if c.Redundant && c.Flags == EnvFlagsBoolean {
		e.Copies[e.Active].Flags = envFlagObsolete
	}
	e.Active = target
	p := base + int64(hdr)
	for i := range e.Vars {
		v := &e.Vars[i]
		v.Offset = p + int64(len(v.Name)) + 1
		p = v.Offset + int64(len(v.Value)) + 1
	}
	return nil
}

// envHeaderErased reports whether writing img over old, a copy at base on
// a flash of erase size es, must erase the erase block that holds the
// copy's header: some bit of that block's part of the copy rises from 0 to
// 1.
func envHeaderErased(old, img []byte, base, es int64) bool {
	n := min(es-base%es, int64(len(img)))
	for i := int64(0); i < n; i++ {
		if img[i]&^old[i] != 0 {
			return true
		}
	}
	return false
}

// checkFlags reads back the flags bytes Save wrote.
func (e *Env) checkFlags(w io.ReaderAt, base int64, flags byte, act int64) error {
	name := e.Config.name()
	b, err := envRead(w, name, base+4, 1)
	if err != nil {
		return err
	}
	if b[0] != flags {
		return fmt.Errorf("%w: %s: flags byte at %#x reads back 0x%02x, not 0x%02x (write-protected?)", nvcore.ErrIO, name, base+4, b[0], flags)
	}
	if e.Config.Flags != EnvFlagsBoolean {
		return nil
	}
	if b, err = envRead(w, name, act+4, 1); err != nil {
		return err
	}
	if b[0] != envFlagObsolete {
		return fmt.Errorf("%w: %s: flags byte at %#x reads back 0x%02x, not 0x%02x (write-protected?)", nvcore.ErrIO, name, act+4, b[0], envFlagObsolete)
	}
	return nil
}

// envDiff returns the smallest range [lo, hi) outside which a and b agree.
func envDiff(a, b []byte) (lo, hi int) {
	hi = len(a)
	for lo < hi && a[lo] == b[lo] {
		lo++
	}
	for hi > lo && a[hi-1] == b[hi-1] {
		hi--
	}
	return lo, hi
}

func envWrite(w io.WriterAt, name string, p []byte, off int64) error {
	n, err := w.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("%s: write %#x bytes at %#x: %w", name, len(p), off, err)
	}
	return nil
}

func envSync(w io.WriterAt, name string) error {
	s, ok := w.(interface{ Sync() error })
	if !ok {
		return nil
	}
	if err := s.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", name, err)
	}
	return nil
}
