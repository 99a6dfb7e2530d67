package cdc

import (
	"slices"
	"strings"

	"github.com/pgtrail/pgtrail"
)

// Row images built in Go. audit.row_images types each column's text with its type's input
// function and prints to_jsonb of the typed row; for the built-in types below that is a fixed
// rewriting of the text the WAL gives, which needs no query, runs nobody's code and costs a
// fraction of the round trip (about 70 µs per change in the database, measured on the write
// benchmark's tables). A table with a column of any other type (a domain, an enum, json, a
// float, an array…), or a value outside the forms below (a date BC, an offset other than UTC),
// takes the query. TestJSONImages_SameAsRowImages holds the two to the same bytes.

// jsonKind is how to_jsonb writes a built-in type's value.
type jsonKind uint8

const (
	kindNone        jsonKind = iota // not built here
	kindString                      // the text as a JSON string
	kindNumber                      // a JSON number, or a string when the text holds an N (NaN, Infinity)
	kindBool                        // t, f → true, false
	kindDate                        // YYYY-MM-DD or ±infinity, as is
	kindTimestamp                   // YYYY-MM-DD HH:MM:SS[.f] → YYYY-MM-DDTHH:MM:SS[.f]
	kindTimestamptz                 // the same, +00 → +00:00 (the replication connection's time zone is UTC)
)

// jsonKinds maps built-in type OIDs (pg_type.h) to how they are written.
var jsonKinds = map[uint32]jsonKind{
	16:   kindBool,   // bool
	19:   kindString, // name
	20:   kindNumber, // int8
	21:   kindNumber, // int2
	23:   kindNumber, // int4
	25:   kindString, // text
	1042: kindString, // bpchar
	1043: kindString, // varchar
	1082: kindDate,   // date
	1114: kindTimestamp,
	1184: kindTimestamptz,
	1700: kindNumber, // numeric
	2950: kindString, // uuid
}

// jsonValue is one column's value in an image.
type jsonValue struct {
	token string  // as jsonb prints it
	text  *string // as ->> gives it; nil for JSON null
	cmp   string  // what jsonb's equality compares: numbers without trailing fractional zeros
}

// jsonImages fills the fields audit.row_images derives for changes of t (one table, no
// TRUNCATE) and returns true, or returns false, having changed nothing, when t or a value is
// not one it builds.
func jsonImages(t *walTable, changes []*change, events []*pgtrail.Event) bool {
	kinds := make([]jsonKind, len(t.types))
	for i, oid := range t.types {
		if kinds[i] = jsonKinds[oid]; kinds[i] == kindNone {
			return false
		}
	}
	if len(t.names) != len(kinds) {
		return false
	}
	// jsonb orders an object's keys by length, then bytes; excluded columns leave the images.
	var keys []int
	excluded := make([]bool, len(kinds))
	for i, n := range t.names {
		if excluded[i] = slices.Contains(t.exclude, n); !excluded[i] {
			keys = append(keys, i)
		}
	}
	slices.SortFunc(keys, func(a, b int) int {
		if d := len(t.names[a]) - len(t.names[b]); d != 0 {
			return d
		}
		return strings.Compare(t.names[a], t.names[b])
	})
	type built struct {
		before, after, details, resourceID *string
		changed                            []string
	}
	out := make([]built, len(changes))
	for k, c := range changes {
		var before, after []jsonValue
		var ok bool
		if c.old != nil {
			if before, ok = jsonRow(kinds, c.old); !ok {
				return false
			}
		}
		if c.new != nil {
			if after, ok = jsonRow(kinds, c.new); !ok {
				return false
			}
		}
		b := &out[k]
		if before != nil {
			b.before = jsonObject(t.names, keys, before)
		}
		if after != nil {
			b.after = jsonObject(t.names, keys, after)
		}
		// changed_columns: every key of an insert or delete; an update's keys whose values
		// differ, and the excluded columns that changed (named, never shown).
		b.changed = []string{}
		var excludedChanged []string
		for _, i := range keys {
			if before == nil || after == nil || before[i].cmp != after[i].cmp || (before[i].text == nil) != (after[i].text == nil) {
				b.changed = append(b.changed, t.names[i])
			}
		}
		if before != nil && after != nil {
			for _, n := range t.exclude {
				if i := slices.Index(t.names, n); i >= 0 && (before[i].cmp != after[i].cmp || (before[i].text == nil) != (after[i].text == nil)) {
					excludedChanged = append(excludedChanged, n)
				}
			}
		}
		b.changed = append(b.changed, excludedChanged...)
		slices.Sort(b.changed)
		// resource_id: the key columns' values (as ->> gives them) of the new image, else the old.
		image := after
		if image == nil {
			image = before
		}
		var parts []string
		for _, n := range t.pk {
			if i := slices.Index(t.names, n); i >= 0 && image[i].text != nil {
				parts = append(parts, *image[i].text)
			}
		}
		if len(parts) > 0 {
			id := strings.Join(parts, ",")
			b.resourceID = &id
		}
		b.details = jsonDetails(changeWarning(c, ""), excludedChanged)
	}
	for k, e := range events {
		b := out[k]
		e.BeforeState, e.AfterState, e.ChangedColumns, e.ResourceID, e.Details = b.before, b.after, b.changed, b.resourceID, b.details
	}
	return true
}

// jsonRow converts one image's column texts (missing columns are NULL).
func jsonRow(kinds []jsonKind, texts []*string) ([]jsonValue, bool) {
	row := make([]jsonValue, len(kinds))
	for i, kind := range kinds {
		if i >= len(texts) || texts[i] == nil {
			row[i] = jsonValue{token: "null", cmp: "null"}
			continue
		}
		v, ok := jsonScalar(kind, *texts[i])
		if !ok {
			return nil, false
		}
		row[i] = v
	}
	return row, true
}

// jsonScalar writes a value's text as to_jsonb does for its kind.
func jsonScalar(kind jsonKind, s string) (jsonValue, bool) {
	switch kind {
	case kindString:
		q := jsonString(s)
		return jsonValue{token: q, text: &s, cmp: q}, true
	case kindNumber:
		if strings.ContainsAny(s, "Nn") {
			q := jsonString(s)
			return jsonValue{token: q, text: &s, cmp: q}, true
		}
		if !isDecimal(s) {
			return jsonValue{}, false
		}
		return jsonValue{token: s, text: &s, cmp: trimZeros(s)}, true
	case kindBool:
		var b string
		switch s {
		case "t":
			b = "true"
		case "f":
			b = "false"
		default:
			return jsonValue{}, false
		}
		return jsonValue{token: b, text: &b, cmp: b}, true
	case kindDate, kindTimestamp, kindTimestamptz:
		x, ok := xsdTime(kind, s)
		if !ok {
			return jsonValue{}, false
		}
		q := jsonString(x)
		return jsonValue{token: q, text: &x, cmp: q}, true
	}
	return jsonValue{}, false
}

// xsdTime rewrites a date or timestamp in PostgreSQL's ISO output style as JSON writes it (ISO
// 8601, "XSD" style). Only the forms checked here: four or more digit years AD, and for
// timestamptz the offset +00.
func xsdTime(kind jsonKind, s string) (string, bool) {
	if s == "infinity" || s == "-infinity" {
		return s, true
	}
	// The date: digits-2digits-2digits.
	dash := strings.IndexByte(s, '-')
	if dash < 4 || !allDigits(s[:dash]) || len(s) < dash+6 || s[dash+3] != '-' ||
		!allDigits(s[dash+1:dash+3]) || !allDigits(s[dash+4:dash+6]) {
		return "", false
	}
	date, rest := s[:dash+6], s[dash+6:]
	if kind == kindDate {
		return s, rest == ""
	}
	// " HH:MM:SS" and an optional fraction.
	if len(rest) < 9 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' ||
		!allDigits(rest[1:3]) || !allDigits(rest[4:6]) || !allDigits(rest[7:9]) {
		return "", false
	}
	clock, rest := rest[1:9], rest[9:]
	if strings.HasPrefix(rest, ".") {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return "", false
		}
		clock, rest = clock+rest[:n], rest[n:]
	}
	switch {
	case kind == kindTimestamp && rest == "":
		return date + "T" + clock, true
	case kind == kindTimestamptz && rest == "+00":
		return date + "T" + clock + "+00:00", true
	}
	return "", false
}

// jsonObject prints an image as jsonb does: keys in jsonb's order, ": " and ", " between.
func jsonObject(names []string, keys []int, row []jsonValue) *string {
	var b strings.Builder
	b.WriteByte('{')
	for n, i := range keys {
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString(jsonString(names[i]))
		b.WriteString(": ")
		b.WriteString(row[i].token)
	}
	b.WriteByte('}')
	s := b.String()
	return &s
}

// jsonDetails is audit.row_images' details: {"capture_warning": …, "excluded_columns_changed":
// […]} without the NULL members, or nil when both are.
func jsonDetails(warning *string, excludedChanged []string) *string {
	if warning == nil && len(excludedChanged) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteByte('{')
	if warning != nil {
		b.WriteString(`"capture_warning": `)
		b.WriteString(jsonString(*warning))
	}
	if len(excludedChanged) > 0 {
		if warning != nil {
			b.WriteString(", ")
		}
		b.WriteString(`"excluded_columns_changed": [`)
		for i, n := range excludedChanged {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(jsonString(n))
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	s := b.String()
	return &s
}

// jsonEscape[c] is how PostgreSQL's escape_json writes the byte c, when not as itself: the
// two-character escapes, \u00xx for the other control characters.
var jsonEscape = func() (t [128]string) {
	const hex = "0123456789abcdef"
	for c := 0; c < ' '; c++ {
		t[c] = `\u00` + string(hex[c>>4]) + string(hex[c&0xF])
	}
	t['\b'], t['\f'], t['\n'], t['\r'], t['\t'], t['"'], t['\\'] = `\b`, `\f`, `\n`, `\r`, `\t`, `\"`, `\\`
	return t
}()

// jsonString quotes s as escape_json does (bytes from 0x80 up, UTF-8, as they are).
func jsonString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 128 && jsonEscape[c] != "" {
			b.WriteString(jsonEscape[c])
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// isDecimal: an optional minus, digits, optionally a point and digits (numeric_out's and the
// integer types' output; never an exponent).
func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	return whole != "" && allDigits(whole) && (!dot || (frac != "" && allDigits(frac)))
}

// trimZeros drops trailing fractional zeros: jsonb compares numbers by value (1.50 = 1.5).
func trimZeros(s string) string {
	if strings.IndexByte(s, '.') < 0 {
		return s
	}
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	if s == "-0" {
		return "0"
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
