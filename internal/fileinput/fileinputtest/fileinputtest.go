// Package fileinputtest holds test helpers for reads of files an operator names.
package fileinputtest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// StalledFIFO makes a FIFO named name in dir whose write end is held open and never written
// to (until the test ends): a read of it waits forever unless something ends it.
func StalledFIFO(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return path
}
