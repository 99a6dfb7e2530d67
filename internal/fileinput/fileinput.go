// Package fileinput reads the small files an operator names on the command line (keys, alert
// rules) so that a wrong path cannot take the machine's memory or hold the process: the read
// stops at a limit, and ends when its context does (SIGTERM), on a pipe or a FIFO too.
package fileinput

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
)

// TooLargeError is returned by ReadFile for a file that holds more than Limit bytes (or, like
// /dev/zero, never ends).
type TooLargeError struct {
	Path  string
	Limit int64
	// What the file is, in the message: "a key file".
	What string
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("read %s: more than %s, the limit for %s", e.Path, FormatSize(e.Limit), e.What)
}

// ReadFile returns the content of the file at path when it holds at most limit bytes, else a
// *TooLargeError naming what (the kind of file) and the limit. It reads no more than limit+1
// bytes, whatever the file is: a device, a pipe, a file that grows.
//
// The file is opened without blocking (a FIFO nobody has opened for writing reads as empty
// instead of waiting for a writer) and a read that waits — a pipe whose writer never writes —
// ends when ctx does, with ctx's error.
func ReadFile(ctx context.Context, path string, limit int64, what string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err // *fs.PathError: "open PATH: …"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, &TooLargeError{Path: path, Limit: limit, What: what}
	}
	// Closing the file wakes a read that waits in the poller (pipes, FIFOs, terminals).
	stop := context.AfterFunc(ctx, func() { f.Close() })
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if !stop() {
		// ctx ended during the read, and the file was closed under it.
		return nil, fmt.Errorf("read %s: %w", path, context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit, What: what}
	}
	return data, nil
}

// FormatSize writes n bytes as "64 KiB", "4 MiB", or "100 bytes" when n is not a whole number of
// either.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
