//go:build unix

package nbd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// unixPair returns both ends of an AF_UNIX stream socket pair, the
// transport the kernel uses.
func unixPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// BenchmarkServe measures Serve's throughput with a memory device, keeping
// depth requests in flight as the kernel does, over a Unix socket pair.
func BenchmarkServe(b *testing.B) {
	for _, bc := range []struct {
		cmd   Command
		size  int
		depth int
	}{
		{CmdRead, 4 << 10, 1},
		{CmdRead, 4 << 10, 32},
		{CmdRead, 128 << 10, 32},
		{CmdWrite, 4 << 10, 32},
		{CmdWrite, 128 << 10, 32},
	} {
		b.Run(fmt.Sprintf("%v/%dK/depth%d", bc.cmd, bc.size>>10, bc.depth), func(b *testing.B) {
			benchServe(b, bc.cmd, bc.size, bc.depth)
		})
	}
}

func benchServe(b *testing.B, cmd Command, size, depth int) {
	const devSize = 64 << 20
	dev := newMemDevice(devSize, 512)
	srv, cli := unixPair(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, srv, dev, Options{Workers: depth}) }()

	slots := make(chan struct{}, depth)
	readErr := make(chan error, 1)
	go func() {
		var hdr [ReplySize]byte
		payload := make([]byte, size)
		for range b.N {
			if _, err := io.ReadFull(cli, hdr[:]); err != nil {
				readErr <- err
				return
			}
			if cmd == CmdRead {
				if _, err := io.ReadFull(cli, payload); err != nil {
					readErr <- err
					return
				}
			}
			<-slots
		}
		readErr <- nil
	}()

	var buf []byte
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := range b.N {
		slots <- struct{}{}
		req := Request{Type: cmd, Handle: uint64(i), Offset: uint64(i*size) % (devSize - uint64(size)), Length: uint32(size)}
		buf, _ = req.AppendBinary(buf[:0])
		if cmd == CmdWrite {
			buf = append(buf, data...)
		}
		if _, err := cli.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-readErr; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cli.Close()
	<-errc
}
