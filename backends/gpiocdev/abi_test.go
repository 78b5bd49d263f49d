package gpiocdev

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/gpio"
)

// The GPIO uAPI v2 structures (include/uapi/linux/gpio.h) hold no pointers
// and pad every __u64 to 8 bytes explicitly (__aligned_u64), so they have
// one layout on every port, 32-bit or 64-bit: the kernel has no compat
// path for them. x/sys/unix declares them with plain uint64, which Go
// aligns to 4 bytes only on 386 and arm: these tests check that the
// explicit padding still puts every member where gcc puts it. The numbers
// are gcc's for linux-libc-dev 6.1, compiled for x86-64 and with -m32 for
// i386 (identical); ARM EABI and MIPS o32 align __u64 to 8, which the
// explicit padding makes moot.
//
//	GOARCH=386 go test ./backends/gpiocdev/
//	GOARCH=mips go test -c -o /tmp/gpio.mips ./backends/gpiocdev/ && qemu-mips-static /tmp/gpio.mips

func TestLayout(t *testing.T) {
	var req unix.GPIOV2LineRequest
	var cfg unix.GPIOV2LineConfig
	var ca unix.GPIOV2LineConfigAttribute
	var attr unix.GPIOV2LineAttribute
	var vals unix.GPIOV2LineValues
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"gpio_v2_line_attribute.id", unsafe.Offsetof(attr.Id), 0},
		{"gpio_v2_line_attribute.values", unsafe.Offsetof(attr.Flags), 8},
		{"sizeof(gpio_v2_line_attribute)", unsafe.Sizeof(attr), 16},
		{"gpio_v2_line_config_attribute.mask", unsafe.Offsetof(ca.Mask), 16},
		{"sizeof(gpio_v2_line_config_attribute)", unsafe.Sizeof(ca), 24},
		{"gpio_v2_line_config.flags", unsafe.Offsetof(cfg.Flags), 0},
		{"gpio_v2_line_config.num_attrs", unsafe.Offsetof(cfg.Num_attrs), 8},
		{"gpio_v2_line_config.attrs", unsafe.Offsetof(cfg.Attrs), 32},
		{"sizeof(gpio_v2_line_config)", unsafe.Sizeof(cfg), 272},
		{"gpio_v2_line_request.offsets", unsafe.Offsetof(req.Offsets), 0},
		{"gpio_v2_line_request.consumer", unsafe.Offsetof(req.Consumer), 256},
		{"gpio_v2_line_request.config", unsafe.Offsetof(req.Config), 288},
		{"gpio_v2_line_request.num_lines", unsafe.Offsetof(req.Num_lines), 560},
		{"gpio_v2_line_request.event_buffer_size", unsafe.Offsetof(req.Event_buffer_size), 564},
		{"gpio_v2_line_request.fd", unsafe.Offsetof(req.Fd), 588},
		{"sizeof(gpio_v2_line_request)", unsafe.Sizeof(req), 592},
		{"gpio_v2_line_values.bits", unsafe.Offsetof(vals.Bits), 0},
		{"gpio_v2_line_values.mask", unsafe.Offsetof(vals.Mask), 8},
		{"sizeof(gpio_v2_line_values)", unsafe.Sizeof(vals), 16},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d (pointer size %d)", tc.name, tc.got, tc.want, unsafe.Sizeof(uintptr(0)))
		}
	}
}

// TestIoctlNumbers decodes the request numbers: _IOWR(0xB4, nr, struct),
// whose size field must be the size of the structure passed. The
// direction bits differ between ports (MIPS, PowerPC and SPARC put three
// of them at bit 29, read = 2 and write = 4; the rest two at bit 30, read
// = 2 and write = 1), but read|write gives 0xc0000000 on both.
func TestIoctlNumbers(t *testing.T) {
	tests := []struct {
		name string
		req  uint32
		nr   uint32
		size uintptr
	}{
		{"GPIO_V2_GET_LINE_IOCTL", unix.GPIO_V2_GET_LINE_IOCTL, 0x07, unsafe.Sizeof(unix.GPIOV2LineRequest{})},
		{"GPIO_V2_LINE_SET_VALUES_IOCTL", unix.GPIO_V2_LINE_SET_VALUES_IOCTL, 0x0f, unsafe.Sizeof(unix.GPIOV2LineValues{})},
	}
	for _, tc := range tests {
		if dir := tc.req & 0xe0000000; dir != 0xc0000000 {
			t.Errorf("%s = %#x: direction %#x, want read|write", tc.name, tc.req, dir)
		}
		if size := tc.req >> 16 & 0x1fff; uintptr(size) != tc.size {
			t.Errorf("%s = %#x: size %d, the structure %d", tc.name, tc.req, size, tc.size)
		}
		if typ, nr := tc.req>>8&0xff, tc.req&0xff; typ != 0xb4 || nr != tc.nr {
			t.Errorf("%s = %#x: type %#x nr %#x, want 0xb4 %#x", tc.name, tc.req, typ, nr, tc.nr)
		}
	}
	// The flag and attribute numbers the request uses.
	if lineFlagOutput != 8 || unix.GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES != 2 {
		t.Errorf("GPIO_V2_LINE_FLAG_OUTPUT %d, GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES %d: want 8, 2", lineFlagOutput, unix.GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES)
	}
}

// TestRequestBytes checks the bytes the kernel copies in for a line
// request, at the C offsets, in the byte order of the build (the kernel's
// own): a 64-bit value at the wrong place or half reads as another line or
// level on a big-endian board.
func TestRequestBytes(t *testing.T) {
	for _, level := range []gpio.Level{gpio.Low, gpio.High} {
		req := lineRequest(13, level)
		raw := unsafe.Slice((*byte)(unsafe.Pointer(&req)), unsafe.Sizeof(req))
		want := make([]byte, 592)
		ne := binary.NativeEndian
		ne.PutUint32(want[0:], 13)  // offsets[0]
		copy(want[256:], "nvmemfs") // consumer
		ne.PutUint64(want[288:], 8) // config.flags: GPIO_V2_LINE_FLAG_OUTPUT
		ne.PutUint32(want[296:], 1) // config.num_attrs
		ne.PutUint32(want[320:], 2) // config.attrs[0].attr.id: OUTPUT_VALUES
		if level == gpio.High {
			ne.PutUint64(want[328:], 1) // config.attrs[0].attr.values
		}
		ne.PutUint64(want[336:], 1) // config.attrs[0].mask
		ne.PutUint32(want[560:], 1) // num_lines
		if !bytes.Equal(raw, want) {
			for i := range raw {
				if raw[i] != want[i] {
					t.Errorf("level %v: byte %d is %#02x, want %#02x", level, i, raw[i], want[i])
				}
			}
		}
	}
	vals := unix.GPIOV2LineValues{Bits: levelBit(gpio.High), Mask: 1}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&vals)), unsafe.Sizeof(vals))
	want := binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, 1), 1)
	if !bytes.Equal(raw, want) {
		t.Errorf("gpio_v2_line_values: % x, want % x", raw, want)
	}
}
