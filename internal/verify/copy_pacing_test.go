package verify

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/pace"
)

// TestCopyReader_Pacing checks that a stream is paced from the first COPY data to the trailer,
// and not after it: the command's completion and the next statement are read without waiting.
func TestCopyReader_Pacing(t *testing.T) {
	p := pace.New(func(time.Duration) {})
	r := &copyReader{ctx: context.Background(), pace: p}
	header := append(append([]byte{}, copyHeader...), 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := r.Write(header); err != nil {
		t.Fatal(err)
	}
	if !p.Copying() {
		t.Fatal("not paced while the COPY streams")
	}
	if _, err := r.Write([]byte{0xff, 0xff}); err != nil { // the trailer: field count -1
		t.Fatal(err)
	}
	if p.Copying() {
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
