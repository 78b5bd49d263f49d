package main

// The editing commands: env, tlv and cell. They act on a device's files in
// the mount, so every byte goes through the server's core with the same
// removal rules as any other program's; env and tlv also act on an image
// file given by path.

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/file"
	"github.com/nvmemfs/nvmemfs/backends/spec"
	"github.com/nvmemfs/nvmemfs/control"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

func editCommands(mountFlag cli.Flag) []*cli.Command {
	envFlags := []cli.Flag{
		mountFlag,
		&cli.BoolFlag{Name: "force", Usage: "write even when no copy has a good CRC (the old content is lost)"},
		&cli.StringFlag{Name: "env-size", Usage: "copy size `N` (or auto); default: as attached, else found by CRC"},
		&cli.BoolFlag{Name: "redundant", Usage: "two copies (image files; a mounted device says itself)"},
		&cli.StringFlag{Name: "env-flags", Usage: "redundant flags: counter or boolean"},
		&cli.StringFlag{Name: "env-offset", Usage: "the (first) copy starts at `N`; default: as attached, else 0"},
		&cli.StringFlag{Name: "env-offset2", Usage: "the second copy starts at `N`; default: as attached, else right after the first"},
	}
	return []*cli.Command{
		{
			Name:      "env",
			Usage:     "print or edit a U-Boot environment, keeping its CRC valid",
			ArgsUsage: "DEVICE|IMAGE [set NAME VALUE | unset NAME]",
			Flags:     envFlags,
			Action:    envCmd,
		},
		{
			Name:      "tlv",
			Usage:     "print or edit an ONIE TlvInfo EEPROM, keeping its CRC valid",
			ArgsUsage: "DEVICE|IMAGE [set CODE VALUE | delete CODE]",
			Flags: []cli.Flag{mountFlag, &cli.BoolFlag{Name: "force",
				Usage: "edit a TlvInfo whose CRC is bad (a write cut short): its fields are read as they stand, and a new CRC written"}},
			Action: tlvCmd,
		},
		{
			Name:      "cell",
			Usage:     "read or write one cell of a mounted device",
			ArgsUsage: "DEVICE CELL",
			Flags: []cli.Flag{
				mountFlag,
				&cli.StringFlag{Name: "format", Value: "hex", Usage: "raw, hex, string, mac, u8, u16, u32 or u64 (little-endian)"},
				&cli.StringFlag{Name: "set", Usage: "write `VALUE`, in --format, to the whole cell"},
			},
			Action: cellCmd,
		},
	}
}

// target is the memory an editing command works on.
type target struct {
	path  string              // the nvmem file, or the image
	image bool                // an image file given by path, not a mounted device
	info  *control.DeviceInfo // the device's facts, when it is mounted
}

// findTarget resolves DEVICE: a name in the mount, or, with a slash in it,
// an image file.
func findTarget(c *cli.Context, name string) (*target, error) {
	if strings.ContainsRune(name, '/') {
		return &target{path: name, image: true}, nil
	}
	mnt := c.String("mount")
	t := &target{path: filepath.Join(mnt, name, "nvmem")}
	if _, err := os.Stat(t.path); err != nil {
		return nil, fmt.Errorf("%s: no device %q in %s (%w)", c.Command.Name, name, mnt, err)
	}
	// The server knows how the device was attached; a mount it does not
	// answer for (another program's, say) is edited from the content alone.
	if resp, err := control.Call(mnt, control.Request{Op: "ls"}); err == nil {
		for i := range resp.Devices {
			if resp.Devices[i].Name == name {
				t.info = &resp.Devices[i]
			}
		}
	}
	return t, nil
}

// explainRefusal says "read-only" where a write was refused because the
// device is (its nvmem file has no write bit, or force_ro is set: the open
// or the write then fail with EACCES or EPERM), not "permission denied".
// Other errors come back as they are.
func (t *target) explainRefusal(err error) error {
	if !errors.Is(err, os.ErrPermission) && !errors.Is(err, unix.EROFS) {
		return err
	}
	if fi, statErr := os.Stat(t.path); statErr == nil && fi.Mode().Perm()&0o222 == 0 {
		return fmt.Errorf("%s is read-only (mode %04o); nothing written", t.path, fi.Mode().Perm())
	}
	if t.info != nil && t.info.ForceRO {
		return fmt.Errorf("%s is read-only: force_ro is set (echo 0 > %s); nothing written", t.path, filepath.Join(filepath.Dir(t.path), "force_ro"))
	}
	return err
}

// open opens the target for reading, and for writing when write is set.
func (t *target) open(write bool) (*os.File, int64, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	var f *os.File
	var err error
	if t.image {
		// A FIFO or a character device given by mistake is refused, not
		// waited on.
		f, err = file.OpenImage(t.path, !write)
	} else {
		f, err = os.OpenFile(t.path, flag, 0)
	}
	if err != nil {
		if write {
			err = t.explainRefusal(err)
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	// On a --cache-all mount no open reaches the server, so a write-open
	// of a read-only file succeeds for root and only the first write would
	// refuse it: refuse it here, before anything is read or written, as
	// the open does elsewhere.
	if write && !t.image && fi.Mode().Perm()&0o222 == 0 {
		f.Close()
		return nil, 0, t.explainRefusal(os.ErrPermission)
	}
	return f, fi.Size(), nil
}

// openEdit reads the arguments of env and tlv, DEVICE [set KEY VALUE |
// REMOVE KEY], and opens the device, for writing when they edit.
func openEdit(c *cli.Context, key, remove string) (*target, *os.File, int64, []string, error) {
	name := c.Command.Name
	args := c.Args().Slice()
	if len(args) == 0 {
		return nil, nil, 0, nil, fmt.Errorf("%s: want DEVICE", name)
	}
	op := args[1:]
	switch {
	case len(op) == 0:
	case op[0] == "set" && len(op) == 3, op[0] == remove && len(op) == 2:
	default:
		return nil, nil, 0, nil, fmt.Errorf("%s: want DEVICE, DEVICE set %s VALUE, or DEVICE %s %s; got %q", name, key, remove, key, strings.Join(op, " "))
	}
	t, err := findTarget(c, args[0])
	if err != nil {
		return nil, nil, 0, nil, err
	}
	f, size, err := t.open(len(op) > 0)
	if err != nil {
		// The target and the operation still: a read may go on with the
		// cells the user may read (fromCells).
		return t, nil, 0, op, fmt.Errorf("%s: %w", name, err)
	}
	return t, f, size, op, nil
}

// envConfig settles the environment's geometry: the command's flags first,
// then the SPEC the device was attached with, then the content itself.
// unsure, when not nil, says why a geometry found from the content may be
// read but not written.
func envConfig(c *cli.Context, t *target, r io.ReaderAt, size int64) (cfg layouts.EnvConfig, unsure, err error) {
	known := false
	if t.info != nil && t.info.Source != "" {
		layout, env, err := spec.LayoutOptions(t.info.Source)
		if err != nil {
			return cfg, nil, err
		}
		if strings.HasPrefix(layout, "u-boot-env") {
			cfg, known = env, true
		}
		// The medium's flags scheme (boolean on mtd:) even when the SPEC
		// names no environment; on flash the copies keep to erase blocks
		// of their own.
		cfg.Flags, cfg.EraseSize = env.Flags, t.info.EraseSize
	}
	if c.IsSet("redundant") {
		cfg.Redundant, known = c.Bool("redundant"), true
	}
	if v := c.String("env-size"); v != "" {
		cfg.Size, cfg.AutoSize, known = 0, v == "auto", true
		if v != "auto" {
			n, err := spec.ParseNumber(v)
			if err != nil {
				return cfg, nil, fmt.Errorf("--env-size: %w", err)
			}
			cfg.Size = n
		}
	}
	for _, o := range []struct {
		flag string
		to   *int64
	}{{"env-offset", &cfg.Offset}, {"env-offset2", &cfg.Offset2}} {
		if v := c.String(o.flag); v != "" {
			n, err := spec.ParseNumber(v)
			if err != nil {
				return cfg, nil, fmt.Errorf("--%s: %w", o.flag, err)
			}
			*o.to, known = n, true
			cfg.Offset2Set = cfg.Offset2Set || o.flag == "env-offset2"
		}
	}
	if cfg.Offset2Set && !cfg.Redundant {
		return cfg, nil, errors.New("env: --env-offset2 places the second copy of a redundant environment: give --redundant too")
	}
	if v := c.String("env-flags"); v != "" {
		f, err := layouts.ParseEnvFlags(v)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Flags = f
	}
	if known {
		return cfg, nil, nil
	}
	found, ok := layouts.EnvDetect(r, size)
	if !ok {
		return cfg, nil, fmt.Errorf("%s: no U-Boot environment found (no CRC matches; give --env-size and --redundant)", t.path)
	}
	found.Flags = cfg.Flags
	// On flash, where copy 2 is: right after copy 1 or on the next erase
	// block, as the content shows. Right after copy 1 and sharing its
	// erase block, the placement check refuses writes (a save of one copy
	// would erase the other; the attach refuses it too).
	found, unsure = layouts.EnvOnFlash(r, size, found, cfg.EraseSize)
	return found, unsure, nil
}

// envGeometryGiven reports whether the command's flags say where the
// environment is.
func envGeometryGiven(c *cli.Context) bool {
	for _, f := range []string{"env-size", "redundant", "env-offset", "env-offset2"} {
		if c.IsSet(f) {
			return true
		}
	}
	return false
}

func envCmd(c *cli.Context) error {
	t, f, size, op, err := openEdit(c, "NAME", "unset")
	if fromCells(t, op, err) {
		return envFromCells(t, err)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	write := len(op) > 0
	// Who may not ask the server (its socket is root's and the mounting
	// user's) does not know how the device was attached: its env-size,
	// env-offset, env-offset2, flags and erase size. Reading may guess
	// from the content; writing with a guess could pick the wrong copy.
	unknown := !t.image && t.info == nil && !envGeometryGiven(c)
	if write && unknown {
		return fmt.Errorf("%s: how the device was attached (its SPEC's env-size, env-offset, env-offset2, env-flags) is known only to root and the user who mounted it; give --env-size, --redundant, --env-offset, --env-offset2 and --env-flags as in its SPEC; nothing written", c.Args().First())
	}
	cfg, unsure, err := envConfig(c, t, f, size)
	if err == nil && write && unsure != nil {
		err = unsure
	}
	if err != nil {
		if unknown {
			err = fmt.Errorf("%w; its SPEC is known only to root and the user who mounted it: give --env-size, --env-offset as in it", err)
		}
		return err
	}
	if !write && (cfg.Offset2Set || !cfg.Redundant) {
		// Reading needs no erase size once the copies' places are fixed:
		// copies that share an erase block, refused for writing, read.
		cfg.EraseSize = 0
	}
	env, loadErr := layouts.LoadEnv(f, size, cfg)
	if !write {
		if loadErr != nil {
			return loadErr
		}
		env.Print(os.Stdout)
		return nil
	}
	if loadErr != nil && !(errors.Is(loadErr, layouts.ErrEnvBadCRC) && c.Bool("force") && env != nil) {
		if errors.Is(loadErr, layouts.ErrEnvBadCRC) {
			return fmt.Errorf("%w; nothing written (--force starts from an empty environment and loses the old content)", loadErr)
		}
		return loadErr
	}
	if op[0] == "set" {
		err = env.Set(op[1], op[2])
	} else {
		err = env.Unset(op[1])
	}
	if err != nil {
		return err
	}
	if err := env.Save(f, c.Bool("force")); err != nil {
		return t.explainRefusal(err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if op[0] == "set" {
		report("%s: %s=%s", c.Args().First(), op[1], op[2])
	} else {
		report("%s: %s removed", c.Args().First(), op[1])
	}
	return nil
}

func tlvCmd(c *cli.Context) error {
	t, f, size, op, err := openEdit(c, "CODE", "delete")
	if fromCells(t, op, err) {
		return tlvFromCells(t, err)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	write := len(op) > 0
	old := make([]byte, min(size, tlvMaxSize))
	if _, err := f.ReadAt(old, 0); err != nil && err != io.EOF {
		return fmt.Errorf("tlv: %w", err)
	}
	if !write {
		return layouts.DescribeTLVInfo(os.Stdout, old)
	}
	info, err := layouts.DecodeTLVInfo(old)
	if err != nil && c.Bool("force") {
		// A cut write leaves fields readable and the CRC wrong: repeating
		// the edit repairs it. A structure that does not parse stays
		// refused.
		info, _, err = layouts.DecodeTLVInfoLenient(old)
	}
	if err != nil {
		return fmt.Errorf("%w; nothing written (--force edits a TlvInfo whose only fault is its CRC)", err)
	}
	code, err := layouts.TLVCode(op[1])
	if err != nil {
		return err
	}
	if op[0] == "set" {
		err = info.Set(code, op[2])
	} else {
		err = info.Delete(code)
	}
	if err != nil {
		return err
	}
	next, err := info.Encode()
	if err != nil {
		return err
	}
	if int64(len(next)) > size {
		return fmt.Errorf("tlv: the new TlvInfo needs %d bytes; the device has %d", len(next), size)
	}
	// One copy, rewritten in place: only the bytes that differ are written,
	// so a cut leaves the fewest bytes changed and a re-run repairs it.
	for _, span := range layouts.TLVChangedSpans(old, next) {
		if _, err := f.WriteAt(next[span[0]:span[1]], int64(span[0])); err != nil {
			return fmt.Errorf("tlv: %w", t.explainRefusal(err))
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if op[0] == "set" {
		report("%s: %s set to %q", c.Args().First(), op[1], op[2])
	} else {
		report("%s: %s deleted", c.Args().First(), op[1])
	}
	return nil
}

// tlvMaxSize is the most a TlvInfo occupies: header and TLVs fit 2 KiB.
const tlvMaxSize = 2048

func cellCmd(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("cell: want DEVICE CELL")
	}
	dev, name := c.Args().Get(0), c.Args().Get(1)
	dir := filepath.Join(c.String("mount"), dev, "cells")
	path, err := findCellFile(dir, name)
	if err != nil {
		return err
	}
	format := c.String("format")
	if c.IsSet("set") {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		v, err := parseCellValue(format, c.String("set"), int(fi.Size()))
		if err != nil {
			return fmt.Errorf("cell %s: %w", name, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cell %s: %w", name, err)
		}
		defer f.Close()
		if _, err := f.Write(v); err != nil {
			return fmt.Errorf("cell %s: %w", name, err)
		}
		return f.Close()
	}
	v, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cell %s: %w", name, err)
	}
	text, err := formatCellValue(format, v)
	if err != nil {
		return fmt.Errorf("cell %s: %w", name, err)
	}
	_, err = io.WriteString(os.Stdout, text)
	return err
}

// findCellFile finds a cell's file: NAME@OFF,BIT as listed, or NAME alone
// when one cell has that name.
func findCellFile(dir, name string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cell: %w", err)
	}
	var found []string
	for _, e := range entries {
		if e.Name() == name {
			return filepath.Join(dir, name), nil
		}
		if before, _, ok := strings.Cut(e.Name(), "@"); ok && before == name {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("cell: no cell %q in %s", name, dir)
	case 1:
		return filepath.Join(dir, found[0]), nil
	}
	return "", fmt.Errorf("cell: %d cells are named %q: say which (%s)", len(found), name, strings.Join(found, ", "))
}

// formatCellValue prints a cell's bytes in a format; every format but raw
// ends with a newline.
func formatCellValue(format string, v []byte) (string, error) {
	switch format {
	case "raw":
		return string(v), nil
	case "hex":
		return hex.EncodeToString(v) + "\n", nil
	case "string":
		// Unused bytes of a text field are NUL, or 0xff on erased EEPROM.
		end := len(v)
		for end > 0 && (v[end-1] == 0 || v[end-1] == 0xff) {
			end--
		}
		return string(v[:end]) + "\n", nil
	case "mac":
		if len(v) != 6 {
			return "", fmt.Errorf("a MAC address has 6 bytes, the cell %d", len(v))
		}
		return net.HardwareAddr(v).String() + "\n", nil
	case "u8", "u16", "u32", "u64":
		n, err := intWidth(format, len(v))
		if err != nil {
			return "", err
		}
		var buf [8]byte
		copy(buf[:], v[:n])
		return strconv.FormatUint(binary.LittleEndian.Uint64(buf[:]), 10) + "\n", nil
	}
	return "", fmt.Errorf("unknown format %q (raw, hex, string, mac, u8, u16, u32, u64)", format)
}

// parseCellValue turns VALUE in a format into the size bytes of a cell. A
// string shorter than the cell is padded with NUL bytes.
func parseCellValue(format, value string, size int) ([]byte, error) {
	var v []byte
	switch format {
	case "raw":
		v = []byte(value)
	case "hex":
		clean := strings.NewReplacer(" ", "", ":", "", "0x", "").Replace(value)
		b, err := hex.DecodeString(clean)
		if err != nil {
			return nil, fmt.Errorf("%q is not hex", value)
		}
		v = b
	case "string":
		if len(value) > size {
			return nil, fmt.Errorf("%q is %d bytes; the cell holds %d", value, len(value), size)
		}
		v = make([]byte, size)
		copy(v, value)
	case "mac":
		mac, err := net.ParseMAC(value)
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("%q is not a MAC address (xx:xx:xx:xx:xx:xx)", value)
		}
		v = mac
	case "u8", "u16", "u32", "u64":
		n, err := intWidth(format, size)
		if err != nil {
			return nil, err
		}
		x, err := strconv.ParseUint(value, 0, 8*n)
		if err != nil {
			return nil, fmt.Errorf("%q is not a %d-bit number", value, 8*n)
		}
		v = binary.LittleEndian.AppendUint64(nil, x)[:n]
	default:
		return nil, fmt.Errorf("unknown format %q (raw, hex, string, mac, u8, u16, u32, u64)", format)
	}
	if len(v) != size {
		return nil, fmt.Errorf("the value is %d bytes; a write must cover the whole cell, %d bytes", len(v), size)
	}
	return v, nil
}

// intWidth checks that a cell of size bytes is read as uN.
func intWidth(format string, size int) (int, error) {
	bits, _ := strconv.Atoi(format[1:])
	if size != bits/8 {
		return 0, fmt.Errorf("%s needs a %d-byte cell; this one has %d bytes", format, bits/8, size)
	}
	return bits / 8, nil
}
