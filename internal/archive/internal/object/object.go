// Package object holds what every archive sink shares: the rules for object keys and the
// not-found error. It sits below package archive so that the sinks (archive/file, archive/s3) need
// not import archive, which imports them to open a sink from a URL.
package object

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is the longest key accepted, in bytes (S3's limit, less room for a URL prefix).
const MaxKeyLen = 900

// MaxSize bounds the objects a sink reads, in bytes: a batch's data file is a few MiB (the stream
// cuts batches at 64 MiB of row data by default), and an object far larger was put there by
// someone else, to take the reader's memory. A variable for tests.
var MaxSize int64 = 1 << 30

// ErrTooLarge reports an object larger than MaxSize; it is not read.
var ErrTooLarge = errors.New("object larger than the limit for an archive object")

// TooLarge returns the error for an object of size bytes.
func TooLarge(size int64) error {
	return fmt.Errorf("%w (%d bytes, limit %d): an archive's objects are never this large; it was put there by someone else", ErrTooLarge, size, MaxSize)
}

// ErrNotFound reports a missing object. errors.Is also matches it against fs.ErrNotExist.
var ErrNotFound error = notFound{}

type notFound struct{}

func (notFound) Error() string        { return "object not found" }
func (notFound) Is(target error) bool { return target == fs.ErrNotExist }

// CheckKey reports whether key is a valid object key: a relative path of '/'-separated
// components, valid UTF-8, at most MaxKeyLen bytes, with no empty component and no component
// starting with '.' (which rules out "." and ".." and keeps sinks free to name temporary files
// ".something"), and no backslash or control character.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errors.New("invalid key: empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("invalid key %.40q...: longer than %d bytes", key, MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("invalid key %q: not UTF-8", key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("invalid key %q: absolute path", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("invalid key %q: control character or backslash", key)
		}
	}
	for c := range strings.SplitSeq(key, "/") {
		if c == "" {
			return fmt.Errorf("invalid key %q: empty path component", key)
		}
		if c[0] == '.' {
			return fmt.Errorf("invalid key %q: path component %q starts with '.'", key, c)
		}
	}
	return nil
}

// Buffer returns buf emptied, with room for n bytes. When buf has none, the new buffer has a
// quarter to spare if it is to be reused (GetBuffer), so that a slightly larger object next time
// still fits, and exactly n if not (Get).
func Buffer(buf []byte, n int, reuse bool) []byte {
	switch {
	case cap(buf) >= n:
		return buf[:0]
	case reuse:
		return make([]byte, 0, n+n/4)
	}
	return make([]byte, 0, n)
}
