package spec

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// ReadCellsFile reads a cells file: one cell a line,
// NAME OFFSET BYTES [BIT_OFFSET NBITS] [mode=MODE], '#' starts a comment. Errors name the
// file and the line; a cell declared twice (the same name, offset and bit
// offset, so the same file in cells/) names both lines. It also returns the
// line of each cell.
func ReadCellsFile(path string) ([]nvcore.CellInfo, []int, error) {
	var cells []nvcore.CellInfo
	var lines []int
	first := map[string]int{} // file name -> line
	err := eachLine(path, func(line int, text string) error {
		words, mode, err := cellModeWord(strings.Fields(text))
		if err != nil {
			return err
		}
		if len(words) != 3 && len(words) != 5 {
			return fmt.Errorf("want NAME OFFSET BYTES [BIT_OFFSET NBITS] [mode=MODE], got %d words", len(words))
		}
		c := nvcore.CellInfo{Name: words[0], Mode: mode}
		if c.Offset, err = ParseNumber(words[1]); err != nil {
			return fmt.Errorf("offset: %v", err)
		}
		if c.Bytes, err = parseInt(words[2]); err != nil {
			return fmt.Errorf("bytes: %v", err)
		}
		if len(words) == 5 {
			if c.BitOffset, err = parseInt(words[3]); err != nil {
				return fmt.Errorf("bit offset: %v", err)
			}
			if c.NBits, err = parseInt(words[4]); err != nil {
				return fmt.Errorf("nbits: %v", err)
			}
			if c.NBits == 0 {
				return fmt.Errorf("nbits: a bit field needs at least one bit")
			}
		}
		if strings.ContainsAny(c.Name, "/@") {
			return fmt.Errorf("cell name %q must not contain / or @", c.Name)
		}
		file := c.FileName()
		if n, ok := first[file]; ok {
			return fmt.Errorf("cell %q at %#x bit %d declared twice, first on line %d (its file cells/%s would hide one of them)", c.Name, c.Offset, c.BitOffset, n, file)
		}
		first[file] = line
		cells = append(cells, c)
		lines = append(lines, line)
		return nil
	})
	return cells, lines, err
}

// ReadConfigFile reads a config file: one SPEC a line, '#' starts a comment,
// relative paths are taken from the file's folder. Errors name the file and
// the line.
func ReadConfigFile(path string) ([]*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var specs []*Spec
	// The whole line is the SPEC: an I2C adapter's name may hold spaces
	// ("i2c-tiny-usb at bus 001 device 005").
	err = eachLine(abs, func(line int, text string) error {
		s, err := Parse(text, filepath.Dir(abs))
		if err != nil {
			return err
		}
		s.Origin = fmt.Sprintf("%s:%d", abs, line)
		specs = append(specs, s)
		return nil
	})
	return specs, err
}

// eachLine calls fn with the text of every line that has any once comments
// are cut, trimmed, and prefixes fn's errors with FILE:LINE.
func eachLine(path string, fn func(line int, text string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if err := fn(n, text); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
