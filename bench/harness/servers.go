package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The comparison servers. Each is mounted with the options nvmemfs's own
// fs.Mount uses (fs/mount.go), so that a difference in the figures is a
// difference in what the server does, not in how the kernel was told to
// treat it.

// benchTimeout is fs/mount.go's entryTimeout: names and attributes cached
// for a second, failed lookups never.
const benchTimeout = time.Second

// mountOptions returns the options fs.Mount builds, for another server.
func mountOptions(name string) *gofs.Options {
	timeout, negative := benchTimeout, time.Duration(0)
	return &gofs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &negative,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
		MountOptions: fuse.MountOptions{
			FsName:            name,
			Name:              name,
			Options:           []string{"default_permissions"},
			DirectMountStrict: os.Geteuid() == 0,
			MaxWrite:          128 << 10,
			DisableXAttrs:     true,
		},
		Logger: log.New(discard{}, "", 0),
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// memFile is the minimal server's one file: bytes held in memory, served
// with direct I/O and no FLUSH as nvmemfs serves a cell by default, so
// every read is a round trip.
type memFile struct {
	gofs.Inode
	data []byte
	born time.Time
}

var (
	_ gofs.NodeOpener    = (*memFile)(nil)
	_ gofs.NodeReader    = (*memFile)(nil)
	_ gofs.NodeGetattrer = (*memFile)(nil)
)

func (f *memFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	return nil, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NOFLUSH, 0
}

func (f *memFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.data[off:]), 0
}

func (f *memFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Nlink = 1
	out.Size = uint64(len(f.data))
	out.Blksize = 4096
	out.SetTimes(&f.born, &f.born, &f.born)
	return 0
}

// memDir is a directory of the minimal server.
type memDir struct {
	gofs.Inode
	born time.Time
}

var _ gofs.NodeGetattrer = (*memDir)(nil)

func (d *memDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	out.SetTimes(&d.born, &d.born, &d.born)
	return 0
}

// mountMinimal mounts the minimal go-fuse server at dir: one file of data,
// at the same depth as an nvmemfs cell (rel, e.g.
// "board/cells/mac-address@fa,0"), so path walks cost the same.
func mountMinimal(dir, rel string, data []byte) (*fuse.Server, error) {
	born := time.Now()
	root := &memDir{born: born}
	opts := mountOptions("bench-minimal")
	opts.OnAdd = func(ctx context.Context) {
		parent := &root.Inode
		parts := splitPath(rel)
		for _, name := range parts[:len(parts)-1] {
			child := parent.NewPersistentInode(ctx, &memDir{born: born}, gofs.StableAttr{Mode: syscall.S_IFDIR})
			parent.AddChild(name, child, false)
			parent = child
		}
		file := parent.NewPersistentInode(ctx, &memFile{data: data, born: born}, gofs.StableAttr{Mode: syscall.S_IFREG})
		parent.AddChild(parts[len(parts)-1], file, false)
	}
	return gofs.Mount(dir, root, opts)
}

func splitPath(rel string) []string {
	var parts []string
	for rel != "" && rel != "." && rel != "/" {
		dir, base := filepath.Split(filepath.Clean(rel))
		parts = append([]string{base}, parts...)
		rel = dir
	}
	return parts
}

// loopStats counts the READ requests that reached a loopback server: with
// passthrough in effect there are none.
type loopStats struct{ reads atomic.Int64 }

// loopNode is go-fuse's own LoopbackNode, unchanged but for a counter of
// the reads that reach the server. Its children are loopNodes too
// (WrapChild), so every file of the tree counts.
type loopNode struct {
	*gofs.LoopbackNode
	stats *loopStats
}

var (
	_ gofs.NodeWrapChilder = (*loopNode)(nil)
	_ gofs.NodeReader      = (*loopNode)(nil)
)

func (n *loopNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &loopNode{LoopbackNode: ln, stats: n.stats}
	}
	return ops
}

func (n *loopNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.stats.reads.Add(1)
	return f.(gofs.FileReader).Read(ctx, dest, off)
}

// loopback is a mounted go-fuse loopback file system.
type loopback struct {
	server *fuse.Server
	stats  *loopStats
	// kernelOffers reports whether the kernel offered FUSE passthrough
	// (CAP_PASSTHROUGH in its INIT request); whether reads really bypassed
	// the server is told by stats.reads.
	kernelOffers bool
}

// mountLoopback mounts go-fuse's loopback of src at dir. With passthrough
// off the CAP_PASSTHROUGH capability is withheld at INIT, so go-fuse never
// registers a backing file and every read goes through the server. With it
// on, go-fuse's LoopbackFile hands its descriptor to the kernel at OPEN
// (FilePassthroughFder, FUSE_DEV_IOC_BACKING_OPEN): that needs kernel 6.9
// or later and CAP_SYS_ADMIN, and go-fuse falls back silently without.
func mountLoopback(dir, src string, passthrough bool) (*loopback, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(src, &st); err != nil {
		return nil, err
	}
	stats := &loopStats{}
	rootData := &gofs.LoopbackRoot{Path: src, Dev: uint64(st.Dev)}
	root := &loopNode{LoopbackNode: &gofs.LoopbackNode{RootData: rootData}, stats: stats}
	rootData.RootNode = root
	name := "bench-loopback"
	opts := mountOptions(name)
	// As go-fuse's example/loopback: keep modes as they are.
	opts.NullPermissions = true
	if !passthrough {
		opts.DisabledCapabilities = fuse.CAP_PASSTHROUGH
	}
	server, err := gofs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("loopback at %s: %w", dir, err)
	}
	offers := server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	return &loopback{server: server, stats: stats, kernelOffers: offers}, nil
}
