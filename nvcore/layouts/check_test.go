package layouts

import (
	"errors"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestCheck: env-size against the device is a configuration error, found
// before any content is read: larger than the device, or than half of it
// for a redundant pair, too small for a header, or a device too small for
// any environment. What fits, and the layouts without a size, pass.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		layout string
		env    EnvConfig
		dev    int64
		want   string // "" passes
	}{
		{"u-boot-env", EnvConfig{Size: 0x100}, 0x100, ""},
		{"u-boot-env", EnvConfig{}, 0x100, ""},
		{"u-boot-env", EnvConfig{Size: 0x101}, 0x100, "env-size 0x101 is larger than the device (size 0x100)"},
		{"u-boot-env", EnvConfig{Size: 0x1000}, 0x100, "env-size 0x1000 is larger than the device"},
		{"u-boot-env", EnvConfig{Size: 1 << 62}, 0x100, "larger than the device"},
		{"u-boot-env", EnvConfig{Size: 4}, 0x100, "at least 5 bytes"},
		{"u-boot-env", EnvConfig{}, 4, "at least 5 bytes"},
		{"u-boot-env", EnvConfig{AutoSize: true}, 4, "at least 5 bytes"},
		{"u-boot-env", EnvConfig{AutoSize: true}, 1 << 30, ""},
		{"u-boot-env-redundant", EnvConfig{Size: 0x80}, 0x100, ""},
		{"u-boot-env-redundant", EnvConfig{}, 0x101, ""},
		{"u-boot-env-redundant", EnvConfig{Size: 0x81}, 0x100, "two copies of it do not fit the device (size 0x100)"},
		{"u-boot-env-redundant", EnvConfig{Size: 0x100}, 0x100, "a copy is at most half of it"},
		{"auto", EnvConfig{Size: 0x100}, 0x100, ""},
		{"auto", EnvConfig{Size: 0x200}, 0x100, "env-size 0x200 is larger than the device"},
		{"auto", EnvConfig{}, 3, ""},
		{"onie-tlv", EnvConfig{Size: 0x1000}, 0x100, ""},
		{"", EnvConfig{}, 0x100, ""},
	} {
		err := Check(c.layout, c.env, c.dev)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %+v on %#x bytes: %v", c.layout, c.env, c.dev, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %+v on %#x bytes: %v, want %q", c.layout, c.env, c.dev, err, c.want)
		case c.want != "" && !errors.Is(err, nvcore.ErrInvalid):
			t.Errorf("%s %+v on %#x bytes: %v, want ErrInvalid", c.layout, c.env, c.dev, err)
		}
	}
}
