package verify

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// chunkedConn is a socket whose reads return at most size bytes, as when the server's sends
// arrive one at a time, and last is returned with the final bytes (io.EOF, or a broken
// connection's error).
type chunkedConn struct {
	net.Conn
	data []byte
	size int
	last error
}

func (c *chunkedConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.last
	}
	n := copy(b[:min(len(b), c.size)], c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 {
		return n, c.last
	}
	return n, nil
}

// TestPacedConn_Read checks that a paced connection passes every byte through, and its error
// after them; waits before reading the socket only after a short read while a COPY streams,
// never outside one (where each read is a round trip); and does not wait because its reader
// takes small pieces (TLS reads a record of at most 16 KiB at a time: pacing that took those
// for short reads would wait 1 ms per 16 KiB).
func TestPacedConn_Read(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	broken := errors.New("connection reset")
	cases := []struct {
		name    string
		sock    int // bytes per socket read
		take    int // bytes per read of the paced connection
		copying bool
		last    error
		waits   int
	}{
		// 128 socket reads of 8 KiB: every one but the first waits.
		{"ShortReadsInCopy", 8 << 10, paceReadBuffer, true, io.EOF, 1<<20/(8<<10) - 1},
		{"ShortReadsOutsideCopy", 8 << 10, paceReadBuffer, false, io.EOF, 0},
		{"LongReadsInCopy", paceShortRead, paceReadBuffer, true, io.EOF, 0},
		// The socket has piled up data; TLS above takes it a record at a time.
		{"SmallTakesInCopy", paceReadBuffer, 16 << 10, true, io.EOF, 0},
		{"ErrorAfterData", paceReadBuffer, 16 << 10, true, broken, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			waits := 0
			p := &pacer{copying: c.copying, wait: func(d time.Duration) { waits++ }}
			conn := &pacedConn{Conn: &chunkedConn{data: data, size: c.sock, last: c.last}, pace: p,
				buf: make([]byte, paceReadBuffer)}
			var got []byte
			buf := make([]byte, c.take)
			var err error
			for {
				var n int
				n, err = conn.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if err != c.last || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, then %v; want the %d written, then %v", len(got), err, len(data), c.last)
			}
			if waits != c.waits {
				t.Errorf("waited %d times, want %d", waits, c.waits)
			}
		})
	}
}

// TestCopyReader_Pacing checks that a stream is paced from the first COPY data to the trailer,
// and not after it: the command's completion and the next statement are read without waiting.
func TestCopyReader_Pacing(t *testing.T) {
	p := &pacer{wait: func(time.Duration) {}}
	r := &copyReader{ctx: context.Background(), pace: p}
	header := append(append([]byte{}, copyHeader...), 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := r.Write(header); err != nil {
		t.Fatal(err)
	}
	if !p.copying {
		t.Fatal("not paced while the COPY streams")
	}
	if _, err := r.Write([]byte{0xff, 0xff}); err != nil { // the trailer: field count -1
		t.Fatal(err)
	}
	if p.copying {
		t.Fatal("still paced after the trailer")
	}
	if err := r.finish(); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultStreams: a server on another machine gets DefaultDBStreams; one on this machine (a
// Unix socket, a loopback address) one stream per two cores, at least one, at most the default.
func TestDefaultStreams(t *testing.T) {
	unix := &net.UnixAddr{Name: "/var/run/postgresql/.s.PGSQL.5432", Net: "unix"}
	loop4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 5432}
	remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5432}
	cases := []struct {
		addr  net.Addr
		cores int
		want  int
	}{
		{unix, 1, 1}, {unix, 2, 1}, {unix, 3, 1}, {unix, 4, 2}, {unix, 64, DefaultDBStreams},
		{loop4, 2, 1}, {loop6, 2, 1}, {loop4, 8, DefaultDBStreams},
		{remote, 1, DefaultDBStreams}, {remote, 2, DefaultDBStreams}, {nil, 2, DefaultDBStreams},
	}
	for _, c := range cases {
		if got := defaultStreams(c.addr, c.cores); got != c.want {
			t.Errorf("defaultStreams(%v, %d cores) = %d, want %d", c.addr, c.cores, got, c.want)
		}
	}
}
