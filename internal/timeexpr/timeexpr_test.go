package timeexpr_test

import (
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

func TestParseAge(t *testing.T) {
	cases := []struct {
		in   string
		want timeexpr.Age
		str  string
	}{
		{"30d", timeexpr.Age{Days: 30}, "30d"},
		{"13mo", timeexpr.Age{Months: 13}, "13mo"},
		{"1y6mo", timeexpr.Age{Years: 1, Months: 6}, "1y6mo"},
		{"2w", timeexpr.Age{Days: 14}, "14d"},
		{"36h", timeexpr.Age{Rest: 36 * time.Hour}, "36h"},
		{"90m", timeexpr.Age{Rest: 90 * time.Minute}, "1h30m"},
		{"0", timeexpr.Age{}, "0"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := timeexpr.ParseAge(c.in)
			if err != nil || got != c.want || got.String() != c.str {
				t.Errorf("ParseAge(%q) = %+v (%q), %v; want %+v (%q)", c.in, got, got.String(), err, c.want, c.str)
			}
		})
	}
	for _, bad := range []string{"", "d", "13", "13 months", "-3d", "3x", "999y"} {
		if _, err := timeexpr.ParseAge(bad); err == nil {
			t.Errorf("ParseAge(%q) accepted", bad)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
	}{
		{"30d", time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)},
		{"1mo", time.Date(2024, 3, 2, 12, 0, 0, 0, time.UTC)}, // Feb 31 rolls over, as time.AddDate does
		{"12h", time.Date(2024, 3, 31, 0, 0, 0, 0, time.UTC)},
		{"now", now},
		{"2024-01-31", time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)},
		{"2024-01-31T10:00", time.Date(2024, 1, 31, 10, 0, 0, 0, time.UTC)},
		{"2024-01-31 10:00:05", time.Date(2024, 1, 31, 10, 0, 5, 0, time.UTC)},
		{"2024-01-31T10:00:00+02:00", time.Date(2024, 1, 31, 8, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := timeexpr.ParseTime(c.in, now)
			if err != nil || !got.Equal(c.want) {
				t.Errorf("ParseTime(%q) = %s, %v; want %s", c.in, got, err, c.want)
			}
		})
	}
	for _, bad := range []string{"yesterday", "2024-13-01", "31/01/2024", ""} {
		if _, err := timeexpr.ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}
