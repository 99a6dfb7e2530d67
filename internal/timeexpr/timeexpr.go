// Package timeexpr parses the time expressions of pgtrail's investigation commands: ages such as
// 30d or 13mo ("--since 30d", "--older-than 13mo") and absolute timestamps.
package timeexpr

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Age is a calendar-aware span: years, months and days move by the calendar (a month back from
// March 31 is March 3 or 2, as time.AddDate does it), the rest is a fixed duration.
type Age struct {
	Years, Months, Days int
	Rest                time.Duration
}

// maxYears keeps ages far from time.Duration's and the calendar's limits.
const maxYears = 200

// ParseAge parses an age such as "30d", "13mo", "1y6mo", "2w", "36h" or "90m": non-negative
// integers each followed by a unit, y (years), mo (months), w (weeks), d (days), h, m (minutes),
// s, ms. "0" is the zero age.
func ParseAge(s string) (Age, error) { return parseAge("age", s) }

// parseAge is ParseAge, its errors naming what s is (an age, a duration).
func parseAge(what, s string) (Age, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "0" {
		return Age{}, nil
	}
	if s == "" {
		return Age{}, fmt.Errorf("%s %q: empty (want e.g. 30d, 13mo, 12h)", what, in)
	}
	var a Age
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		j := i
		for j < len(s) && (s[j] < '0' || s[j] > '9') {
			j++
		}
		if i == 0 || j == i {
			return Age{}, fmt.Errorf("%s %q: want numbers with units, e.g. 30d, 13mo, 12h", what, in)
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil {
			return Age{}, fmt.Errorf("%s %q: number out of range", what, in)
		}
		if n > maxYears*366*24*3600 {
			return Age{}, fmt.Errorf("%s %q: longer than %d years", what, in, maxYears)
		}
		switch unit := s[i:j]; unit {
		case "y":
			a.Years += n
		case "mo":
			a.Months += n
		case "w":
			a.Days += 7 * n
		case "d":
			a.Days += n
		case "h", "m", "s", "ms":
			d, err := time.ParseDuration(s[:j])
			if err != nil {
				return Age{}, fmt.Errorf("%s %q: %w", what, in, err)
			}
			a.Rest += d
		default:
			return Age{}, fmt.Errorf("%s %q: unknown unit %q (want y, mo, w, d, h, m, s or ms)", what, in, unit)
		}
		s = s[j:]
	}
	if a.Years+a.Months/12+a.Days/365+int(a.Rest/(365*24*time.Hour)) > maxYears {
		return Age{}, fmt.Errorf("%s %q: longer than %d years", what, in, maxYears)
	}
	return a, nil
}

// Fixed lengths of the calendar units, for spans that must be one duration (a retention, a
// lag): never shorter than the calendar's, so a retention errs on keeping data longer.
const (
	Day   = 24 * time.Hour
	Month = 31 * Day
	Year  = 366 * Day
)

// ParseDuration parses a duration the way every pgtrail flag reads one: an age as ParseAge
// reads it ("90d", "7y", "13mo", "1d12h", "500ms"), with y, mo and d taken as Year, Month and
// Day, or anything time.ParseDuration reads ("1.5h", "250us") that is not negative. "0" is 0.
func ParseDuration(s string) (time.Duration, error) {
	a, err := parseAge("duration", s)
	if err != nil {
		d, derr := time.ParseDuration(strings.TrimSpace(s))
		switch {
		case derr != nil:
			return 0, err
		case d < 0:
			return 0, fmt.Errorf("duration %q: negative", s)
		}
		return d, nil
	}
	return a.Duration(), nil
}

// Duration is a as one fixed span: its years, months and days taken as Year, Month and Day.
func (a Age) Duration() time.Duration {
	return time.Duration(a.Years)*Year + time.Duration(a.Months)*Month + time.Duration(a.Days)*Day + a.Rest
}

// FormatDuration writes d the way ParseDuration reads it: whole years and days as y and d
// ("7y", "90d", "1d12h"), the rest as time.Duration does without its zero units ("1h30m",
// "200ms").
func FormatDuration(d time.Duration) string {
	var a Age
	if d >= Day {
		if d%Year == 0 {
			a.Years = int(d / Year)
		} else {
			a.Days = int(d / Day)
			a.Rest = d % Day
		}
	} else {
		a.Rest = d
	}
	return a.String()
}

// Before returns t moved back by a.
func (a Age) Before(t time.Time) time.Time {
	return t.AddDate(-a.Years, -a.Months, -a.Days).Add(-a.Rest)
}

// IsZero reports whether a is the zero age.
func (a Age) IsZero() bool { return a == Age{} }

// String formats a the way ParseAge reads it.
func (a Age) String() string {
	var b strings.Builder
	for _, p := range []struct {
		n    int
		unit string
	}{{a.Years, "y"}, {a.Months, "mo"}, {a.Days, "d"}} {
		if p.n != 0 {
			fmt.Fprintf(&b, "%d%s", p.n, p.unit)
		}
	}
	if a.Rest != 0 {
		r := a.Rest.String() // 1h30m0s
		if strings.HasSuffix(r, "m0s") || strings.HasSuffix(r, "h0s") {
			r = strings.TrimSuffix(r, "0s")
		}
		if strings.HasSuffix(r, "h0m") {
			r = strings.TrimSuffix(r, "0m")
		}
		b.WriteString(r)
	}
	if b.Len() == 0 {
		return "0"
	}
	return b.String()
}

// layouts are the absolute forms ParseTime accepts; those without a zone are UTC.
var layouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	time.DateOnly,
}

// ParseTime parses a point in time: an age back from now ("30d", "12h"), "now", or a timestamp
// (RFC 3339, "2006-01-02 15:04:05", "2006-01-02T15:04", or a date, which means its midnight).
// Timestamps without a zone are UTC.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if s != "" && s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:") {
		a, err := ParseAge(s)
		if err != nil {
			return time.Time{}, err
		}
		return a.Before(now), nil
	}
	for _, l := range layouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want an age such as 30d or 12h, or a timestamp such as 2024-01-31 or 2024-01-31T12:00:00Z", s)
}
