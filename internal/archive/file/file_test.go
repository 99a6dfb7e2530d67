package file_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/archive/sinktest"
)

func newSink(t *testing.T) *file.Sink {
	t.Helper()
	s, err := file.New(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSink_Conformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) archive.Sink { return newSink(t) })
}

func TestSink_PutFilesReadOnlyAndComplete(t *testing.T) {
	s := newSink(t)
	ctx := context.Background()
	key := "events/tenant=a/dt=2024-01-01/1-2.parquet"
	if err := s.Put(ctx, key, []byte("data")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Root(), filepath.FromSlash(key))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("mode of %s = %v, want 0444 (read-only)", p, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the object (no temporary file left)", len(entries))
	}
	// A sink opened again on the same directory sees the object.
	again, err := file.New(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Get(ctx, key); err != nil || string(got) != "data" {
		t.Errorf("Get from a reopened sink = %q, %v", got, err)
	}
}

func TestSink_LeftoverTempFile(t *testing.T) {
	// Tried: a temporary file left by a Put that crashed before linking. Must survive: it is not
	// listed, and a retried Put of the key succeeds.
	s := newSink(t)
	ctx := context.Background()
	dir := filepath.Join(s.Root(), "digests", "r")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".put-12345"), []byte("partial"), 0o444); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, ""); err != nil || len(keys) != 0 {
		t.Errorf("List = %q, %v; want the temporary file hidden", keys, err)
	}
	if err := s.Put(ctx, "digests/r/0.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, "digests/"); err != nil || !slices.Equal(keys, []string{"digests/r/0.json"}) {
		t.Errorf("List = %q, %v", keys, err)
	}
}

func TestNew(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		name, dir, wantErr string
	}{
		{"Relative", "relative/dir", "not absolute"},
		{"UnderAFile", "FILE/sub", "not a directory"},
		{"AFile", "FILE", "not a directory"},
		// Tried: file:///missing/deep, a typo in a parent. Must survive: the file system as
		// it was (no parent created), and an error naming the parent.
		{"MissingParent", "missing/deep", "no such file or directory (the archive directory is created, not its parent " + filepath.Join(base, "missing") + ")"},
	}
	if err := os.WriteFile(filepath.Join(base, "FILE"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if tt.name != "Relative" {
				dir = filepath.Join(base, dir)
			}
			if _, err := file.New(dir); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%q) = %v, want an error containing %q", dir, err, tt.wantErr)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("New created the missing parent (lstat: %v)", err)
	}
	t.Run("CreatesTheDirectory", func(t *testing.T) {
		dir := filepath.Join(base, "new")
		if _, err := file.New(dir); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("New(%s) did not create it: %v", dir, err)
		}
		if _, err := file.New(dir); err != nil {
			t.Errorf("New on the existing directory: %v", err)
		}
	})
}

// TestSink_GetNonRegular plants in a file archive what someone with write access to its
// directory (and not to the signing key) can: a FIFO, a link to a directory, a link to a device,
// under the keys of a digest. Tried: Get and List of them. Must survive: the reader: Get returns
// an error naming the key at once (a FIFO held it in open(2) forever; a device was read without
// end), not ErrNotFound (the object is there, and wrong).
func TestSink_GetNonRegular(t *testing.T) {
	s := newSink(t)
	dir := filepath.Join(s.Root(), "digests", "1-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "0.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "1.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(dir, "2.json")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"digests/1-1/0.json", "digests/1-1/1.json", "digests/1-1/2.json"} {
		t.Run(key, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := s.Get(context.Background(), key); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), key+": not a regular file") || errors.Is(err, archive.ErrNotFound) {
					t.Errorf("Get(%s) = %v; want an error: not a regular file", key, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Get(%s) still waiting after 5 s", key)
			}
		})
	}
}

// TestOpen: readers open an archive that must exist. Tried: a missing directory, a regular file,
// a relative path, and an existing archive. Must hold: the first three fail (a missing one with
// fs.ErrNotExist, and it is not created); the archive's objects are read.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"Missing": filepath.Join(dir, "missing"), "RegularFile": plain, "Relative": "archive"} {
		t.Run(name, func(t *testing.T) {
			if _, err := file.Open(path); err == nil {
				t.Fatalf("Open(%s) succeeded", path)
			} else if name == "Missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
			}
			if name == "Missing" {
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Open(missing) created it (stat: %v)", err)
				}
			}
		})
	}
	t.Run("Existing", func(t *testing.T) {
		w := newSink(t)
		if err := w.Put(context.Background(), "a/b", []byte("data")); err != nil {
			t.Fatal(err)
		}
		r, err := file.Open(w.Root())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.Get(context.Background(), "a/b"); err != nil || string(got) != "data" {
			t.Errorf("Get = %q, %v", got, err)
		}
	})
}
