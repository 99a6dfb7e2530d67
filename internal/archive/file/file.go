// Package file stores archive objects as read-only files in a local directory (archive.Sink for
// file:// URLs). It suits tests, a mounted WORM volume, or a staging disk synced elsewhere; it does
// not make files immutable against root.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/pgtrail/pgtrail/internal/archive/internal/object"
)

// Sink stores each object as a file, read-only (0444), under a root directory. Keys map to paths
// below the root. It is safe for concurrent use by one process; two processes writing the same
// key may both succeed, and then the file holds one of their contents.
type Sink struct {
	root string
}

// New returns a sink rooted at dir, which must be absolute; dir is created if missing, but not
// its parents: a mistyped parent (file:///missing/deep) is an error wrapping fs.ErrNotExist, not
// a tree of new directories.
func New(dir string) (*Sink, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file sink: directory %q is not absolute", dir)
	}
	dir = filepath.Clean(dir)
	err := os.Mkdir(dir, 0o755)
	switch {
	case errors.Is(err, fs.ErrExist):
		return Open(dir)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("file sink: %w (the archive directory is created, not its parent %s)", err, filepath.Dir(dir))
	case err != nil:
		return nil, fmt.Errorf("file sink: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("file sink: create %s: %w", dir, err)
	}
	return &Sink{root: dir}, nil
}

// Open returns a sink on dir, which must be absolute and exist: readers (verify, search,
// export) use it, so that a mistyped path is an error, not an empty archive (which verifies as
// intact). The error for a missing directory wraps fs.ErrNotExist.
func Open(dir string) (*Sink, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file sink: directory %q is not absolute", dir)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file sink: %s is not a directory", dir)
	}
	return &Sink{root: dir}, nil
}

// Root returns the sink's directory.
func (s *Sink) Root() string { return s.root }

// Put writes data to a temporary file beside the key's path, fsyncs it, links it into place
// (no-clobber: an existing object wins) and fsyncs the directory, so the object is durable
// and complete once Put returns. An existing key is left as it is and Put returns nil.
func (s *Sink) Put(ctx context.Context, key string, data []byte) error {
	if err := object.CheckKey(key); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	dst := s.path(key)
	if _, err := os.Lstat(dst); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("put %s: %w", key, err)
	}
	dir := filepath.Dir(dst)
	if err := s.mkdirAll(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := writeNew(dir, dst, data); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Get returns the content of key, or an error wrapping object.ErrNotFound.
func (s *Sink) Get(ctx context.Context, key string) ([]byte, error) {
	return s.get(ctx, key, nil, false)
}

// GetBuffer is Get reading into buf's storage (see archive.BufferGetter).
func (s *Sink) GetBuffer(ctx context.Context, key string, buf []byte) ([]byte, error) {
	return s.get(ctx, key, buf, true)
}

// get reads key into buf's storage (see object.Buffer for reuse).
func (s *Sink) get(ctx context.Context, key string, buf []byte, reuse bool) ([]byte, error) {
	if err := object.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	// O_NONBLOCK: a FIFO planted in the archive must not hold the reader in open(2).
	f, err := os.OpenFile(s.path(key), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("get %s: %w", key, object.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		// Put writes regular files only. Anything else (a link to /dev/zero, a FIFO) was put
		// there by someone else, and would be read without end.
		return nil, fmt.Errorf("get %s: not a regular file but %s", key, fileKind(fi.Mode()))
	}
	if fi.Size() > object.MaxSize {
		return nil, fmt.Errorf("get %s: %w", key, object.TooLarge(fi.Size()))
	}
	data, err := readAll(f, fi.Size(), buf, reuse)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return data, nil
}

// fileKind names what a non-regular file is, for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// readAll reads f, a regular file of length n when opened, to its end into buf[:0], sized from
// n (one more byte to see the end without growing), like os.ReadFile but into the caller's
// storage.
func readAll(f *os.File, n int64, buf []byte, reuse bool) ([]byte, error) {
	size := 0
	if n < math.MaxInt32 {
		size = int(n)
	}
	buf = object.Buffer(buf, size+1, reuse)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096) // the file grew since Stat
		}
	}
}

// List returns the keys that start with prefix (a plain string prefix, as in S3), sorted.
// Temporary files of interrupted Puts are not listed.
func (s *Sink) List(ctx context.Context, prefix string) ([]string, error) {
	// Walk only the deepest directory the prefix names; the rest is filtered by string prefix.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir := prefix[:i]
		if err := object.CheckKey(dir); err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		start = s.path(dir)
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != start {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *Sink) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(path.Clean(key)))
}

// mkdirAll creates dir and its missing parents below the root, fsyncing each parent after adding
// an entry, so that a file linked into a new directory survives a crash.
func (s *Sink) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != s.root && parent != dir {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// writeNew writes data to a hidden temporary file in dir and links it to dst. The hard link fails
// if dst exists, which keeps the first object; filesystems without hard links fall back to rename.
func writeNew(dir, dst string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return err
	}
	defer func() {
		if rmErr := os.Remove(tmp.Name()); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = rmErr
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return d.Close()
}
