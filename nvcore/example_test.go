package nvcore_test

import (
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// board returns the content of a small board EEPROM: a 6-byte MAC address
// at 0x10, a 16-bit board revision at 0x20 (little-endian 0x0203), and a
// serial number as text at 0x30.
func board() []byte {
	data := make([]byte, 64)
	copy(data[0x10:], []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55})
	copy(data[0x20:], []byte{0x03, 0x02})
	copy(data[0x30:], "SN0042")
	return data
}

// boardCells declares the cells of board.
var boardCells = []nvcore.CellInfo{
	{Name: "mac-address", Offset: 0x10, Bytes: 6},
	{Name: "revision", Offset: 0x20, Bytes: 2},
	{Name: "serial-number", Offset: 0x30, Bytes: 6},
}

func ExampleRegistry_Register() {
	reg := nvcore.NewRegistry()
	mem := nvcoretest.NewMemory(board())
	dev, err := reg.Register(nvcore.Config{
		Name:  "board",
		Type:  nvcore.TypeEEPROM,
		Cells: []nvcore.CellInfo{{Name: "mac-address", Offset: 0x10, Bytes: 6}},
	}, mem)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister("board")

	fmt.Println(dev.Name(), dev.Type(), dev.Size(), "bytes")
	cell, err := dev.Cell("mac-address")
	if err != nil {
		log.Fatal(err)
	}
	mac, err := cell.Read()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: % x\n", cell.Name(), mac)
	// Output:
	// board EEPROM 64 bytes
	// mac-address: 00 11 22 33 44 55
}

func ExampleRegistry_Cell() {
	reg := nvcore.NewRegistry()
	if _, err := reg.Register(nvcore.Config{Name: "board", Cells: boardCells}, nvcoretest.NewMemory(board())); err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister("board")

	// A consumer names a cell "device/cell".
	rev, err := reg.Cell("board/revision")
	if err != nil {
		log.Fatal(err)
	}
	v, err := rev.ReadU16()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("revision %#04x at %#x\n", v, rev.Offset())

	sn, err := reg.Cell("board/serial-number")
	if err != nil {
		log.Fatal(err)
	}
	text, err := sn.Read()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("serial %q\n", text)

	// The fixed-size readers check the cell's size.
	if _, err := sn.ReadU16(); errors.Is(err, nvcore.ErrInvalid) {
		fmt.Println("serial-number is not a u16")
	}
	if _, err := reg.Cell("board/nope"); errors.Is(err, nvcore.ErrNoCell) {
		fmt.Println("board/nope: no such cell")
	}
	// Output:
	// revision 0x0203 at 0x20
	// serial "SN0042"
	// serial-number is not a u16
	// board/nope: no such cell
}

func ExampleDevice_ReadAt() {
	reg := nvcore.NewRegistry()
	dev, err := reg.Register(nvcore.Config{Name: "board"}, nvcoretest.NewMemory(board()))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister("board")

	buf := make([]byte, 6)
	n, err := dev.ReadAt(buf, 0x30)
	fmt.Printf("%d %q %v\n", n, buf[:n], err)

	// As io.ReaderAt says: a read crossing the end is short, with io.EOF.
	n, err = dev.ReadAt(buf, 60)
	fmt.Println(n, err == io.EOF)
	// Output:
	// 6 "SN0042" <nil>
	// 4 true
}

func ExampleRegistry_Subscribe() {
	reg := nvcore.NewRegistry()
	cancel := reg.Subscribe(func(ev nvcore.Event) {
		if ev.Cell != nil {
			fmt.Println(ev.Kind, ev.Device.Name(), ev.Cell.Name())
			return
		}
		fmt.Println(ev.Kind, ev.Device.Name())
	})
	defer cancel()

	cfg := nvcore.Config{Name: "board", Cells: boardCells[:2]}
	if _, err := reg.Register(cfg, nvcoretest.NewMemory(board())); err != nil {
		log.Fatal(err)
	}
	// Removal publishes the cells in reverse order, then the device.
	if err := reg.Unregister("board"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// NVMEM_ADD board
	// NVMEM_CELL_ADD board mac-address
	// NVMEM_CELL_ADD board revision
	// NVMEM_CELL_REMOVE board revision
	// NVMEM_CELL_REMOVE board mac-address
	// NVMEM_REMOVE board
}

func ExampleRegistry_Unregister() {
	reg := nvcore.NewRegistry()
	mem := nvcoretest.NewMemory(board())
	dev, err := reg.Register(nvcore.Config{Name: "board", Cells: boardCells}, mem)
	if err != nil {
		log.Fatal(err)
	}
	mac, err := dev.Cell("mac-address")
	if err != nil {
		log.Fatal(err)
	}

	// Unregister waits for the calls already inside the provider, closes
	// it, and returns.
	if err := reg.Unregister("board"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("provider closed:", mem.Closed())

	// The handles may still be held: every read through them now fails.
	_, err = dev.ReadAt(make([]byte, 4), 0)
	fmt.Println("device read:", errors.Is(err, nvcore.ErrNoDevice))
	_, err = mac.Read()
	fmt.Println("cell read:", errors.Is(err, nvcore.ErrNoDevice))
	_, err = reg.Device("board")
	fmt.Println("lookup:", errors.Is(err, nvcore.ErrNoDevice))
	fmt.Println("calls after close:", mem.CallsAfterClose())
	// Output:
	// provider closed: true
	// device read: true
	// cell read: true
	// lookup: true
	// calls after close: 0
}
