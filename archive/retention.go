package archive

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day and Year are the units ParseRetention accepts beyond time.ParseDuration's. A year is 366
// days so that a retention in years is never shorter than that many calendar years, leap days
// included: retention errs on keeping data longer.
const (
	Day  = 24 * time.Hour
	Year = 366 * Day
)

// maxRetention keeps durations far from time.Duration's limit (about 292 years).
const maxRetention = 200 * Year

// ParseRetention parses a retention such as "7y", "90d", "36h" or "1y30d": one or more
// non-negative integers each followed by a unit, y (Year), w (week), d (Day), or any unit
// time.ParseDuration knows (h, m, s, …). "0" is 0. Negative and over-long values are errors.
func ParseRetention(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("retention %q: empty (want e.g. 7y, 90d, 36h)", in)
	}
	var total time.Duration
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
			return 0, fmt.Errorf("retention %q: want numbers with units, e.g. 7y, 90d, 36h", in)
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("retention %q: %w", in, err)
		}
		var unit time.Duration
		switch s[i:j] {
		case "y":
			unit = Year
		case "w":
			unit = 7 * Day
		case "d":
			unit = Day
		default:
			d, err := time.ParseDuration(s[:j])
			if err != nil {
				return 0, fmt.Errorf("retention %q: unknown unit %q (want y, w, d, h, m or s)", in, s[i:j])
			}
			n, unit = 1, d
		}
		if float64(n)*float64(unit) > float64(maxRetention) {
			return 0, fmt.Errorf("retention %q: longer than %d years", in, maxRetention/Year)
		}
		total += time.Duration(n) * unit
		if total > maxRetention || total < 0 {
			return 0, fmt.Errorf("retention %q: longer than %d years", in, maxRetention/Year)
		}
		s = s[j:]
	}
	return total, nil
}
