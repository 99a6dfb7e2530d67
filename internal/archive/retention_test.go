package archive_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func TestParseRetention(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"7y", 7 * 366 * day, ""},
		{"90d", 90 * day, ""},
		{"36h", 36 * time.Hour, ""},
		{"2w", 14 * day, ""},
		{"1y30d", 396 * day, ""},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, ""},
		{"3s", 3 * time.Second, ""},
		{" 10d ", 10 * day, ""},
		{"0", 0, ""},
		{"0d", 0, ""},
		{"", 0, "empty"},
		{"7", 0, "want numbers with units"},
		{"y", 0, "want numbers with units"},
		{"-1d", 0, "want numbers with units"},
		{"1.5d", 0, "unknown unit"},
		{"7x", 0, "unknown unit"},
		{"7Y", 0, "unknown unit"},
		{"201y", 0, "longer than 200 years"},
		{"99999999999999d", 0, "longer than 200 years"},
		{"99999999999999999999d", 0, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := archive.ParseRetention(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseRetention(%q) = %s, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseRetention(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}
