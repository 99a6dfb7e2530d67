package bytesize_test

import (
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/bytesize"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"64MiB", 64 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"512KiB", 512 << 10, ""},
		{"512KB", 512_000, ""},
		{"512kB", 512_000, ""},
		{"10MB", 10_000_000, ""},
		{"2TiB", 2 << 40, ""},
		{"1.5GiB", 3 << 29, ""},
		{"100B", 100, ""},
		{" 64 MiB ", 64 << 20, ""},
		{"64mib", 64 << 20, ""},
		{"", 0, "empty"},
		{"MiB", 0, "want a size"},
		{"-1MiB", 0, "want a size"},
		{"64XB", 0, `unknown unit "XB"`},
		{"0.5B", 0, "whole number of bytes"},
		{"9999999PiB", 0, "too large"},
	}
	for _, c := range cases {
		t.Run(strings.TrimSpace(c.in), func(t *testing.T) {
			got, err := bytesize.Parse(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("Parse(%q) = %d, %v; want an error containing %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	cases := []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{100, "100B"},
		{64 << 20, "64MiB"},
		{1 << 30, "1GiB"},
		{1536, "1536B"},
		{512 << 10, "512KiB"},
	}
	for _, c := range cases {
		if got := bytesize.Format(c.in); got != c.want {
			t.Errorf("Format(%d) = %q; want %q", c.in, got, c.want)
		}
		if back, err := bytesize.Parse(bytesize.Format(c.in)); err != nil || back != c.in {
			t.Errorf("Parse(Format(%d)) = %d, %v", c.in, back, err)
		}
	}
}
