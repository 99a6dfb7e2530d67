package fileinput_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/fileinput"
)

// TestReadFile tries what a path on a command line can be besides a small file: a device that
// never ends, a file far over the limit, a FIFO nobody writes, a pipe whose writer never writes.
// What must survive: memory (nothing past limit+1 bytes is read), time (each case ends at once,
// or when its context does) and a message naming the file and the limit; a file at the limit and
// a pipe whose writer is slow are still read whole.
func TestReadFile(t *testing.T) {
	const limit = 64 << 10
	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("k"), size), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	atLimit := write("at-limit", limit)
	overLimit := write("over-limit", limit+1)
	big := filepath.Join(dir, "sparse-1g")
	if f, err := os.Create(big); err != nil || f.Truncate(1<<30) != nil || f.Close() != nil {
		t.Fatalf("sparse file: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	silentFIFO := filepath.Join(dir, "silent-fifo")
	if err := syscall.Mkfifo(silentFIFO, 0o600); err != nil {
		t.Fatal(err)
	}
	holder, err := os.OpenFile(silentFIFO, os.O_RDWR, 0) // a writer that never writes
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	slowPipe := func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		go func() {
			time.Sleep(100 * time.Millisecond)
			w.WriteString("slow but complete")
			w.Close()
		}()
		return fmt.Sprintf("/proc/self/fd/%d", r.Fd())
	}

	tooLarge := func(path string) string {
		return fmt.Sprintf("read %s: more than 64 KiB, the limit for a key file", path)
	}
	cases := []struct {
		name    string
		path    string
		timeout time.Duration
		want    string // content; "" with wantErr
		wantErr string
		is      error
	}{
		{"AtLimit", atLimit, time.Second, string(bytes.Repeat([]byte("k"), limit)), "", nil},
		{"OverLimit", overLimit, time.Second, "", tooLarge(overLimit), nil},
		{"Sparse1GiB", big, time.Second, "", tooLarge(big), nil},
		{"DevZero", "/dev/zero", time.Second, "", tooLarge("/dev/zero"), nil},
		{"DevURandom", "/dev/urandom", time.Second, "", tooLarge("/dev/urandom"), nil},
		{"Missing", filepath.Join(dir, "missing"), time.Second, "", "no such file", fs.ErrNotExist},
		{"FIFOWithoutWriter", fifo, time.Second, "", "", nil},
		{"FIFOSilentWriter", silentFIFO, 300 * time.Millisecond, "", "read " + silentFIFO, context.DeadlineExceeded},
		{"SlowPipe", slowPipe(), 5 * time.Second, "slow but complete", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			var data []byte
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				data, err = fileinput.ReadFile(ctx, c.path, limit, "a key file")
			}()
			select {
			case <-done:
			case <-time.After(c.timeout + 2*time.Second):
				t.Fatalf("ReadFile(%s) still reading %s after its context's deadline", c.path, 2*time.Second)
			}
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("ReadFile(%s) = %v", c.path, err)
			case c.wantErr != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.wantErr))):
				t.Fatalf("ReadFile(%s) = %d bytes, %v; want an error with %q", c.path, len(data), err, c.wantErr)
			case c.is != nil && !errors.Is(err, c.is):
				t.Errorf("error %v does not wrap %v", err, c.is)
			case c.wantErr == "" && string(data) != c.want:
				t.Errorf("ReadFile(%s) = %.40q (%d bytes), want %.40q", c.path, data, len(data), c.want)
			}
			var tl *fileinput.TooLargeError
			if c.wantErr != "" && bytes.Contains([]byte(c.wantErr), []byte("more than")) && (!errors.As(err, &tl) || tl.Limit != limit) {
				t.Errorf("error %v is not a *TooLargeError with the limit", err)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{64 << 10: "64 KiB", 4 << 20: "4 MiB", 1000: "1000 bytes", 1536: "1536 bytes", 3 << 19: "1536 KiB"} {
		if got := fileinput.FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
