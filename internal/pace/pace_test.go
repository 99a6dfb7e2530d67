package pace

import (
	"bytes"
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
			p := &Pacer{copying: c.copying, wait: func(d time.Duration) { waits++ }}
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
