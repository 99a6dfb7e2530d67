package verify

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// chunkedReader returns its data in reads of at most size bytes, as a socket does when the
// server's sends arrive one at a time.
type chunkedReader struct {
	data []byte
	size int
}

func (r *chunkedReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), r.size)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestPacer_Read checks that a pacer passes every byte through, waits before a read only after a
// short read while a COPY streams, and never outside one (where each read is a round trip).
func TestPacer_Read(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	cases := []struct {
		name    string
		size    int
		copying bool
		waits   int
	}{
		// 128 reads of 8 KiB and the one that finds the end: every one but the first waits.
		{"ShortReadsInCopy", 8 << 10, true, 1 << 20 / (8 << 10)},
		{"ShortReadsOutsideCopy", 8 << 10, false, 0},
		{"LongReadsInCopy", paceShortRead, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			waits := 0
			p := &pacer{r: &chunkedReader{data: data, size: c.size}, copying: c.copying,
				wait: func(d time.Duration) { waits++ }}
			// As bufio.Reader calls it: always with room for a large read.
			var got []byte
			buf := make([]byte, paceReadBuffer)
			var err error
			for {
				var n int
				n, err = p.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if err != io.EOF || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
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
