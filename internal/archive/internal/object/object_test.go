package object_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive/internal/object"
)

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key, wantErr string
	}{
		{"events/tenant=a/dt=2024-01-01/1-2.parquet", ""},
		{"a", ""},
		{"a.b/c..d/e.", ""},
		{"unicodé/名前", ""},
		{"", "empty"},
		{"/a", "absolute"},
		{"a//b", "empty path component"},
		{"a/", "empty path component"},
		{"..", "starts with '.'"},
		{"a/../b", "starts with '.'"},
		{"./a", "starts with '.'"},
		{"a/.tmp", "starts with '.'"},
		{`a\b`, "backslash"},
		{"a\tb", "control character"},
		{"a\x7fb", "control character"},
		{"\xff", "not UTF-8"},
		{strings.Repeat("a", object.MaxKeyLen+1), "longer than"},
	}
	for _, tt := range tests {
		err := object.CheckKey(tt.key)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckKey(%.50q) = %v, want error containing %q", tt.key, err, tt.wantErr)
		}
	}
}

func TestErrNotFound(t *testing.T) {
	if !errors.Is(object.ErrNotFound, fs.ErrNotExist) {
		t.Errorf("ErrNotFound does not match fs.ErrNotExist")
	}
	if errors.Is(fs.ErrNotExist, object.ErrNotFound) {
		t.Errorf("fs.ErrNotExist matches ErrNotFound: other not-exist errors must not pass for a missing object")
	}
}

// TestBuffer: a buffer with room is reused, emptied; a new one has a quarter to spare only when
// it is to be reused.
func TestBuffer(t *testing.T) {
	big := make([]byte, 5, 100)
	cases := []struct {
		name    string
		buf     []byte
		n       int
		reuse   bool
		wantCap int
		same    bool
	}{
		{"Fits", big, 100, true, 100, true},
		{"FitsNoReuse", big, 60, false, 100, true},
		{"TooSmallReuse", big, 200, true, 250, false},
		{"TooSmallOnce", big, 200, false, 200, false},
		{"NoneReuse", nil, 40, true, 50, false},
		{"NoneOnce", nil, 40, false, 40, false},
	}
	for _, c := range cases {
		got := object.Buffer(c.buf, c.n, c.reuse)
		if len(got) != 0 || cap(got) != c.wantCap {
			t.Errorf("%s: len %d cap %d, want 0 and %d", c.name, len(got), cap(got), c.wantCap)
		}
		if same := c.buf != nil && &got[:1][0] == &c.buf[:1][0]; same != c.same {
			t.Errorf("%s: reused buf %v, want %v", c.name, same, c.same)
		}
	}
}
