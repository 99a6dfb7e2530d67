package archive

import (
	"time"

	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// Day and Year are the units ParseRetention accepts beyond time.ParseDuration's. A year is 366
// days so that a retention in years is never shorter than that many calendar years, leap days
// included: retention errs on keeping data longer (a month, mo, is 31 days for the same reason).
const (
	Day  = timeexpr.Day
	Year = timeexpr.Year
)

// ParseRetention parses a retention such as "7y", "90d", "13mo", "36h" or "1y30d": one or more
// non-negative integers each followed by a unit, y (Year), mo (31 days), w (week), d (Day), or
// any unit time.ParseDuration knows (h, m, s, …). "0" is 0. Negative and over-long (more than
// 200 years) values are errors. It is timeexpr.ParseDuration, which every duration flag uses.
func ParseRetention(s string) (time.Duration, error) {
	return timeexpr.ParseDuration(s)
}
