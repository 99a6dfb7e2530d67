// Package pace reads a PostgreSQL connection's socket in large, paced reads while a COPY streams
// rows to a client that drains it faster than the server fills it (verify db): fewer wake-ups,
// less CPU per row on both sides. Outside COPY a paced connection reads as any other.
package pace

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Pacing. The verifier drains a socket faster than PostgreSQL fills it, so a plain reader wakes up
// for every 8 KiB the server sends (its send buffer's size) and reads it in a few small read
// calls: on a 2-core machine those wake-ups cost the client about 1 µs of CPU per row, and each
// one can preempt the backend that sent the data. While a COPY streams, a Pacer lets data pile up
// in the kernel's socket buffer (which grows to megabytes) after a short read, and a large
// buffer takes it in one call: one wake-up per ~100 KiB.
//
// The Pacer reads the network connection itself, below TLS where the connection has it: a TLS
// connection hands out one record (at most 16 KiB) per read, so every read above it is short,
// and pacing there would wait 1 ms per 16 KiB.
const (
	paceReadBuffer = 256 << 10
	paceShortRead  = 64 << 10
	paceWait       = time.Millisecond
)

// Pacer decides when a connection's reads wait. All its fields belong to the goroutine using the
// connection (pgconn reads on the caller's goroutine).
type Pacer struct {
	// copying: a COPY's rows are streaming (SetCopying, by the COPY's reader); outside COPY
	// every read is a round trip, and waiting would only add latency.
	copying bool
	short   bool                // the last read returned less than paceShortRead
	wait    func(time.Duration) // time.Sleep; a test's counter
}

// read reads conn into b, after a wait if the last read was short mid-COPY.
func (p *Pacer) read(conn net.Conn, b []byte) (int, error) {
	if p.copying && p.short {
		p.wait(paceWait)
	}
	n, err := conn.Read(b)
	p.short = n < paceShortRead
	return n, err
}

// pacedConn is a network connection read through its Pacer and a large buffer.
type pacedConn struct {
	net.Conn
	pace *Pacer
	buf  []byte
	r, w int   // buf[r:w] is read and not yet taken
	err  error // the error of the read that filled buf, returned once buf is taken
}

func (c *pacedConn) Read(b []byte) (int, error) {
	if c.r == c.w {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		if len(b) >= len(c.buf) {
			return c.pace.read(c.Conn, b)
		}
		c.r, c.w = 0, 0
		n, err := c.pace.read(c.Conn, c.buf)
		c.w, c.err = n, err
		if n == 0 {
			c.err = nil
			return 0, err
		}
	}
	n := copy(b, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// Dial wraps dial (nil: a plain net.Dialer) so that each connection it makes reads its socket
// through a 256 KiB buffer, and waits 1 ms after a short read while verify db reads COPY on it
// (see above). Verify db dials its extra streams this way on its own; a connection passed to it
// that was dialed this way is paced too. Outside COPY the connection reads as any other.
func Dial(dial pgconn.DialFunc) pgconn.DialFunc {
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 5 * time.Minute}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &pacedConn{Conn: conn, pace: New(time.Sleep), buf: make([]byte, paceReadBuffer)}, nil
	}
}

// Of returns the Pacer conn reads through (Dial), or nil.
func Of(conn *pgconn.PgConn) *Pacer {
	c := conn.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*pacedConn); ok {
		return pc.pace
	}
	return nil
}

// New returns a Pacer that waits with wait (time.Sleep; a test's counter).
func New(wait func(time.Duration)) *Pacer { return &Pacer{wait: wait} }

// SetCopying tells whether a COPY's rows are streaming on the connection.
func (p *Pacer) SetCopying(on bool) { p.copying = on }

// Copying reports what SetCopying set last.
func (p *Pacer) Copying() bool { return p.copying }
