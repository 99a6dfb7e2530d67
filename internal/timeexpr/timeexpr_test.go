package timeexpr_test

import (
	"strings"
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

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"90d", 90 * day, ""},
		{"7y", 7 * 366 * day, ""},
		{"13mo", 13 * 31 * day, ""},
		{"2w", 14 * day, ""},
		{"1y30d", 396 * day, ""},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"10s", 10 * time.Second, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"0", 0, ""},
		{"", 0, "empty"},
		{"7", 0, "want numbers with units"},
		{"-1d", 0, "want numbers with units"},
		{"-1s", 0, "negative"},
		{"7x", 0, `unknown unit "x"`},
		{"201y", 0, "longer than 200 years"},
		{"99999999999999d", 0, "longer than 200 years"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := timeexpr.ParseDuration(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("ParseDuration(%q) = %s, %v; want an error containing %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("ParseDuration(%q) = %s, %v; want %s", c.in, got, err, c.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		in   time.Duration
		want string
	}{
		{0, "0"},
		{200 * time.Millisecond, "200ms"},
		{30 * time.Second, "30s"},
		{90 * time.Minute, "1h30m"},
		{day, "1d"},
		{7 * 366 * day, "7y"},
		{36 * time.Hour, "1d12h"},
	}
	for _, c := range cases {
		got := timeexpr.FormatDuration(c.in)
		if got != c.want {
			t.Errorf("FormatDuration(%s) = %q; want %q", c.in, got, c.want)
		}
		if back, err := timeexpr.ParseDuration(got); err != nil || back != c.in {
			t.Errorf("ParseDuration(FormatDuration(%s)) = %s, %v", c.in, back, err)
		}
	}
}
