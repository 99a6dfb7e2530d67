// Package bytesize reads and writes the sizes of pgtrail's flags: "64MiB", "1GiB", "512KB" or a
// plain number of bytes.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are the suffixes Parse accepts, case-insensitively: the IEC binary units (KiB = 1024)
// and the SI decimal ones (KB = 1000), as their standards define them.
var units = map[string]float64{
	"":    1,
	"b":   1,
	"kb":  1e3,
	"mb":  1e6,
	"gb":  1e9,
	"tb":  1e12,
	"pb":  1e15,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
	"pib": 1 << 50,
}

// Parse parses a size: a non-negative number, optionally with a fraction, and a unit: B, KiB,
// MiB, GiB, TiB, PiB (powers of 1024) or KB, MB, GB, TB, PB (powers of 1000), in any case; no
// unit means bytes. The result must be a whole number of bytes.
func Parse(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("size %q: empty (want e.g. 64MiB, 1GiB, 512KB or a number of bytes)", in)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a size such as 64MiB, 1GiB, 512KB or a number of bytes", in)
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a size such as 64MiB, 1GiB, 512KB or a number of bytes", in)
	}
	unit := strings.TrimSpace(s[i:])
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", in, unit)
	}
	v := n * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", in)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", in)
	}
	return int64(v), nil
}

// Format writes n the way Parse reads it: in the largest binary unit that divides it exactly,
// else in bytes ("64MiB", "1536B", "0").
func Format(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
