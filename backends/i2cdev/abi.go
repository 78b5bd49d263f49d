package i2cdev

// The kernel's user-space ABI for /dev/i2c-N, and the pure functions that
// turn a Tx into the argument of one ioctl.
//
// golang.org/x/sys/unix (v0.50.0) defines none of the Linux I2C names: no
// ioctl numbers, no functionality bits, no structures. Everything below is
// therefore written here from the kernel headers, each with the header it
// comes from:
//
//	include/uapi/linux/i2c-dev.h  ioctl numbers, struct i2c_rdwr_ioctl_data,
//	                              struct i2c_smbus_ioctl_data
//	include/uapi/linux/i2c.h      struct i2c_msg and its flags, I2C_FUNC_*,
//	                              union i2c_smbus_data, I2C_SMBUS_* sizes
//
// The Go structs below hold their fields in the C order with Go's natural
// alignment, which is the C alignment on every Linux port: a pointer is 8
// bytes aligned to 8 on 64-bit targets and 4 bytes aligned to 4 on 32-bit
// ones, so Go inserts exactly the padding the C compiler does. abi_test.go
// checks the offsets and sizes for the pointer size of the build, and the
// bytes the kernel will read.

import (
	"fmt"
	"syscall"
	"unsafe"
)

// ioctl request numbers, include/uapi/linux/i2c-dev.h. They are plain
// numbers, not _IOW()-encoded, so they are the same on every architecture.
const (
	ioctlSlave = 0x0703 // I2C_SLAVE: use this slave address (refused with EBUSY if a driver owns it)
	ioctlFuncs = 0x0705 // I2C_FUNCS: get the adapter functionality mask (unsigned long *)
	ioctlRdwr  = 0x0707 // I2C_RDWR: combined R/W transfer, one STOP only (struct i2c_rdwr_ioctl_data *)
	ioctlSMBus = 0x0720 // I2C_SMBUS: SMBus transfer (struct i2c_smbus_ioctl_data *)
)

// rdwrMaxMsgs is I2C_RDWR_IOCTL_MAX_MSGS (i2c-dev.h); MaxMsgLen is the limit
// drivers/i2c/i2c-dev.c puts on one message ("Limit the size of the message
// to a sane amount": len > 8192 is EINVAL).
const (
	rdwrMaxMsgs = 42
	// MaxMsgLen is the most bytes one direction of a Tx may carry on a
	// plain I2C adapter (i2c-dev refuses longer messages).
	MaxMsgLen = 8192
)

// msgRead is the i2c_msg flag I2C_M_RD (include/uapi/linux/i2c.h): read
// data, from slave to master ("guaranteed to be 0x0001!"). The other flags
// (I2C_M_TEN, I2C_M_NOSTART, ...) are not used.
const msgRead = 0x0001

// Adapter functionality bits as I2C_FUNCS reports them, from
// include/uapi/linux/i2c.h (I2C_FUNC_*). Funcs returns the mask.
const (
	FuncI2C                 = 0x00000001 // I2C_FUNC_I2C: plain I2C messages (I2C_RDWR)
	Func10BitAddr           = 0x00000002 // I2C_FUNC_10BIT_ADDR
	FuncProtocolMangling    = 0x00000004 // I2C_FUNC_PROTOCOL_MANGLING
	FuncSMBusPEC            = 0x00000008 // I2C_FUNC_SMBUS_PEC
	FuncNoStart             = 0x00000010 // I2C_FUNC_NOSTART
	FuncSlave               = 0x00000020 // I2C_FUNC_SLAVE
	FuncSMBusBlockProcCall  = 0x00008000 // I2C_FUNC_SMBUS_BLOCK_PROC_CALL
	FuncSMBusQuick          = 0x00010000 // I2C_FUNC_SMBUS_QUICK
	FuncSMBusReadByte       = 0x00020000 // I2C_FUNC_SMBUS_READ_BYTE
	FuncSMBusWriteByte      = 0x00040000 // I2C_FUNC_SMBUS_WRITE_BYTE
	FuncSMBusReadByteData   = 0x00080000 // I2C_FUNC_SMBUS_READ_BYTE_DATA
	FuncSMBusWriteByteData  = 0x00100000 // I2C_FUNC_SMBUS_WRITE_BYTE_DATA
	FuncSMBusReadWordData   = 0x00200000 // I2C_FUNC_SMBUS_READ_WORD_DATA
	FuncSMBusWriteWordData  = 0x00400000 // I2C_FUNC_SMBUS_WRITE_WORD_DATA
	FuncSMBusProcCall       = 0x00800000 // I2C_FUNC_SMBUS_PROC_CALL
	FuncSMBusReadBlockData  = 0x01000000 // I2C_FUNC_SMBUS_READ_BLOCK_DATA
	FuncSMBusWriteBlockData = 0x02000000 // I2C_FUNC_SMBUS_WRITE_BLOCK_DATA
	FuncSMBusReadI2CBlock   = 0x04000000 // I2C_FUNC_SMBUS_READ_I2C_BLOCK: I2C-like block read with a 1-byte register
	FuncSMBusWriteI2CBlock  = 0x08000000 // I2C_FUNC_SMBUS_WRITE_I2C_BLOCK: I2C-like block write with a 1-byte register
	FuncSMBusHostNotify     = 0x10000000 // I2C_FUNC_SMBUS_HOST_NOTIFY
	FuncSMBusI2CBlock       = FuncSMBusReadI2CBlock | FuncSMBusWriteI2CBlock
	FuncSMBusByte           = FuncSMBusReadByte | FuncSMBusWriteByte
	FuncSMBusByteData       = FuncSMBusReadByteData | FuncSMBusWriteByteData
)

// SMBus transfer directions and sizes, include/uapi/linux/i2c.h
// (I2C_SMBUS_READ/WRITE and the "size parameter" values).
const (
	smbusWrite = 0 // I2C_SMBUS_WRITE
	smbusRead  = 1 // I2C_SMBUS_READ

	smbusQuick        = 0 // I2C_SMBUS_QUICK
	smbusByte         = 1 // I2C_SMBUS_BYTE
	smbusByteData     = 2 // I2C_SMBUS_BYTE_DATA
	smbusI2CBlockData = 8 // I2C_SMBUS_I2C_BLOCK_DATA
)

// SMBusBlockMax is I2C_SMBUS_BLOCK_MAX (i2c.h): the most data bytes one
// SMBus block transfer carries, so the largest read or write an SMBus-only
// adapter can do in one Tx.
const SMBusBlockMax = 32

// i2cMsg is struct i2c_msg (include/uapi/linux/i2c.h):
//
//	struct i2c_msg { __u16 addr; __u16 flags; __u16 len; __u8 *buf; };
//
// 16 bytes on 64-bit (buf at 8), 12 bytes on 32-bit (buf at 8): in both,
// two bytes of padding follow len.
type i2cMsg struct {
	addr  uint16
	flags uint16
	len   uint16
	buf   unsafe.Pointer
}

// rdwrIoctlData is struct i2c_rdwr_ioctl_data (include/uapi/linux/i2c-dev.h):
//
//	struct i2c_rdwr_ioctl_data { struct i2c_msg *msgs; __u32 nmsgs; };
type rdwrIoctlData struct {
	msgs  unsafe.Pointer
	nmsgs uint32
}

// smbusIoctlData is struct i2c_smbus_ioctl_data (include/uapi/linux/i2c-dev.h):
//
//	struct i2c_smbus_ioctl_data {
//		__u8 read_write; __u8 command; __u32 size;
//		union i2c_smbus_data *data;
//	};
//
// size sits at offset 4, data at 8; 16 bytes on 64-bit, 12 on 32-bit.
type smbusIoctlData struct {
	readWrite uint8
	command   uint8
	size      uint32
	data      unsafe.Pointer
}

// smbusData is union i2c_smbus_data (include/uapi/linux/i2c.h):
//
//	union i2c_smbus_data { __u8 byte; __u16 word; __u8 block[I2C_SMBUS_BLOCK_MAX + 2]; };
//
// 34 bytes. byte is data[0]; for block transfers block[0] is the length and
// the data follow from block[1]. The kernel copies it in and out with
// copy_from_user/copy_to_user, so its alignment does not matter.
type smbusData [SMBusBlockMax + 2]byte

// buildMsgs turns Tx(addr, w, r) on a plain I2C adapter into the i2c_msg
// array of one I2C_RDWR: a write message, a read message, or both (write
// then read, joined by a repeated START). With neither, it is one empty
// write: the SMBus "quick write", an address probe.
func buildMsgs(addr uint16, w, r []byte) ([]i2cMsg, error) {
	if err := checkAddr7(addr); err != nil {
		return nil, err
	}
	if len(w) > MaxMsgLen || len(r) > MaxMsgLen {
		return nil, fmt.Errorf("write %d, read %d bytes: i2c-dev carries at most %d bytes a message: %w",
			len(w), len(r), MaxMsgLen, syscall.EINVAL)
	}
	msgs := make([]i2cMsg, 0, 2)
	if len(w) > 0 || len(r) == 0 {
		msgs = append(msgs, i2cMsg{addr: addr, len: uint16(len(w)), buf: bufPtr(w)})
	}
	if len(r) > 0 {
		msgs = append(msgs, i2cMsg{addr: addr, flags: msgRead, len: uint16(len(r)), buf: bufPtr(r)})
	}
	return msgs, nil
}

// rdwrArg is the I2C_RDWR argument pointing at msgs.
func rdwrArg(msgs []i2cMsg) rdwrIoctlData {
	return rdwrIoctlData{msgs: unsafe.Pointer(unsafe.SliceData(msgs)), nmsgs: uint32(len(msgs))}
}

func bufPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// checkAddr7 refuses what is not a 7-bit address: i2c-dev has a 10-bit mode,
// but no EEPROM uses it and the kernel calls it broken (i2c-dev.h: "10-bit
// addresses are NOT supported!").
func checkAddr7(addr uint16) error {
	if addr > 0x7f {
		return fmt.Errorf("address %#x is not a 7-bit address (10-bit addressing is not supported): %w", addr, syscall.EINVAL)
	}
	return nil
}

// smbusXfer is one I2C_SMBUS ioctl, planned from a Tx shape.
type smbusXfer struct {
	readWrite uint8
	command   uint8
	size      uint32
	useData   bool      // pass &data; quick and byte write pass NULL
	data      smbusData // in: block length and bytes to write; out: bytes read
	readFrom  int       // where the bytes read start in data (1 for a block, 0 for a byte)
	readLen   int       // how many bytes of data go back into r
}

// arg is the I2C_SMBUS argument for x. x must not move or die before the
// ioctl returns.
func (x *smbusXfer) arg() smbusIoctlData {
	a := smbusIoctlData{readWrite: x.readWrite, command: x.command, size: x.size}
	if x.useData {
		a.data = unsafe.Pointer(&x.data)
	}
	return a
}

// result copies the bytes read into r after a successful ioctl. An adapter
// that reports a shorter I2C block than asked for is a protocol error.
func (x *smbusXfer) result(r []byte) error {
	if x.readLen == 0 {
		return nil
	}
	if x.size == smbusI2CBlockData {
		if n := int(x.data[0]); n < x.readLen {
			return fmt.Errorf("%s: the adapter returned %d of %d bytes: %w", x, n, x.readLen, syscall.EPROTO)
		}
	}
	copy(r[:x.readLen], x.data[x.readFrom:x.readFrom+x.readLen])
	return nil
}

// String names the SMBus transaction as the SMBus specification does.
func (x *smbusXfer) String() string {
	switch {
	case x.size == smbusQuick:
		return "SMBus quick write"
	case x.size == smbusByte:
		return fmt.Sprintf("SMBus write byte 0x%02x", x.command)
	case x.size == smbusByteData && x.readWrite == smbusRead:
		return fmt.Sprintf("SMBus read byte data (command 0x%02x)", x.command)
	case x.size == smbusByteData:
		return fmt.Sprintf("SMBus write byte data (command 0x%02x)", x.command)
	case x.size == smbusI2CBlockData && x.readWrite == smbusRead:
		return fmt.Sprintf("SMBus read I2C block data (command 0x%02x, %d bytes)", x.command, x.readLen)
	case x.size == smbusI2CBlockData:
		return fmt.Sprintf("SMBus write I2C block data (command 0x%02x, %d bytes)", x.command, x.data[0])
	}
	return fmt.Sprintf("SMBus transfer size %d", x.size)
}

// planSMBus translates Tx(addr, w, r) for an adapter that speaks SMBus but
// not plain I2C (funcs lacks FuncI2C). The shapes an EEPROM with 8-bit word
// addresses needs have an SMBus equivalent that puts the very same bytes on
// the wire:
//
//	Tx([cmd], r), 1 <= len(r) <= 32  read I2C block data (or read byte data, for one byte)
//	Tx([cmd, d...], nil), 1..32 d    write I2C block data (or write byte data, for one byte)
//	Tx([cmd], nil)                   write byte: cmd is the byte (ACK polling, setting the pointer)
//	Tx(nil, nil)                     quick write (address probe)
//
// Anything else is refused with an error that wraps syscall.EOPNOTSUPP
// (which errors.Is also matches with errors.ErrUnsupported), as is a shape
// whose SMBus transaction the adapter lacks.
func planSMBus(funcs uint64, w, r []byte) (*smbusXfer, error) {
	need := func(bit uint64, name string, x *smbusXfer) (*smbusXfer, error) {
		if funcs&bit == 0 {
			return nil, fmt.Errorf("SMBus-only adapter lacks %s, needed for %s: %w", name, x, syscall.EOPNOTSUPP)
		}
		return x, nil
	}
	switch {
	case len(w) == 0 && len(r) == 0:
		x := &smbusXfer{readWrite: smbusWrite, size: smbusQuick}
		return need(FuncSMBusQuick, "I2C_FUNC_SMBUS_QUICK", x)

	case len(w) == 0:
		return nil, fmt.Errorf("SMBus-only adapter cannot read %d bytes without a command byte first (current-address read): %w",
			len(r), syscall.EOPNOTSUPP)

	case len(w) == 1 && len(r) == 0:
		x := &smbusXfer{readWrite: smbusWrite, command: w[0], size: smbusByte}
		return need(FuncSMBusWriteByte, "I2C_FUNC_SMBUS_WRITE_BYTE", x)

	case len(w) == 1 && len(r) <= SMBusBlockMax:
		if len(r) == 1 && funcs&FuncSMBusReadI2CBlock == 0 && funcs&FuncSMBusReadByteData != 0 {
			x := &smbusXfer{readWrite: smbusRead, command: w[0], size: smbusByteData, useData: true, readFrom: 0, readLen: 1}
			return x, nil
		}
		x := &smbusXfer{readWrite: smbusRead, command: w[0], size: smbusI2CBlockData, useData: true, readFrom: 1, readLen: len(r)}
		x.data[0] = byte(len(r))
		return need(FuncSMBusReadI2CBlock, "I2C_FUNC_SMBUS_READ_I2C_BLOCK", x)

	case len(w) == 1:
		return nil, fmt.Errorf("SMBus-only adapter reads at most %d bytes a transfer, not %d: %w",
			SMBusBlockMax, len(r), syscall.EOPNOTSUPP)

	case len(r) > 0:
		return nil, fmt.Errorf("SMBus-only adapter cannot write %d bytes then read (a 16-bit word address needs a plain I2C adapter): %w",
			len(w), syscall.EOPNOTSUPP)

	case len(w)-1 > SMBusBlockMax:
		return nil, fmt.Errorf("SMBus-only adapter writes at most %d data bytes after the command byte, not %d: %w",
			SMBusBlockMax, len(w)-1, syscall.EOPNOTSUPP)

	default:
		n := len(w) - 1
		if n == 1 && funcs&FuncSMBusWriteI2CBlock == 0 && funcs&FuncSMBusWriteByteData != 0 {
			x := &smbusXfer{readWrite: smbusWrite, command: w[0], size: smbusByteData, useData: true}
			x.data[0] = w[1]
			return x, nil
		}
		x := &smbusXfer{readWrite: smbusWrite, command: w[0], size: smbusI2CBlockData, useData: true}
		x.data[0] = byte(n)
		copy(x.data[1:], w[1:])
		return need(FuncSMBusWriteI2CBlock, "I2C_FUNC_SMBUS_WRITE_I2C_BLOCK", x)
	}
}
