package pgtrail

import (
	"crypto/sha256"
	"strconv"
	"strings"
)

// CanonicalVersion names the canonical encoding below. It is part of the hashed bytes, so a future
// encoding can never produce the same hash as this one by accident.
const CanonicalVersion = "pgtrail-v1"

// GenesisHash is the prev_hash of the first entry of a chain.
var GenesisHash = make([]byte, sha256.Size)

// AppendCanonical appends the canonical encoding of e (version 1) to buf and returns it.
//
// The encoding is "pgtrail-v1\n" followed by every field in a fixed order, each as a netstring
// without terminator: "<byte length>:<bytes>", or "~" for NULL. Numbers are decimal, occurred_at is
// microseconds since the Unix epoch, uuid and inet use PostgreSQL's text forms, jsonb is PostgreSQL's
// text output, and changed_columns is PostgreSQL's text[] output ({a,"b c"}). The SQL
// function audit.canonical computes the same bytes; docs/design.md is the specification.
func AppendCanonical(buf []byte, e *Event) []byte {
	buf = append(buf, CanonicalVersion...)
	buf = append(buf, '\n')
	buf = appendInt(buf, e.Seq)
	buf = appendString(buf, e.EventID)
	buf = appendInt(buf, e.OccurredAt.UnixMicro())
	buf = appendUint(buf, e.TxID)
	buf = appendString(buf, e.ActionType)
	buf = appendString(buf, e.ResourceType)
	buf = appendNullable(buf, e.ResourceID)
	buf = appendString(buf, e.Outcome)
	buf = appendString(buf, e.ActorID)
	buf = appendNullable(buf, e.ActorIP)
	buf = appendNullable(buf, e.ActorIPRaw)
	buf = appendNullable(buf, e.ActorUserAgent)
	buf = appendNullable(buf, e.RequestID)
	buf = appendNullable(buf, e.TenantID)
	buf = appendString(buf, e.DBUser)
	buf = appendNullable(buf, e.ApplicationName)
	buf = appendNullable(buf, e.ClientAddr)
	buf = appendColumns(buf, e.ChangedColumns)
	buf = appendNullable(buf, e.BeforeState)
	buf = appendNullable(buf, e.AfterState)
	buf = appendNullable(buf, e.Details)
	return buf
}

// ChainHash returns SHA-256(prev ‖ canonical).
func ChainHash(prev, canonical []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Hash returns the entry hash of e given its PrevHash, using buf as scratch space.
func (e *Event) Hash(buf []byte) ([sha256.Size]byte, []byte) {
	buf = AppendCanonical(buf[:0], e)
	return ChainHash(e.PrevHash, buf), buf
}

// The helpers below write into buf without allocating: verification runs them for every entry
// of the trail, so they are on its hot path.

func appendString(buf []byte, s string) []byte {
	return append(appendLen(buf, len(s)), s...)
}

// appendLen writes a netstring's "<length>:".
func appendLen(buf []byte, n int) []byte {
	switch {
	case n < 10:
		return append(buf, byte('0'+n), ':')
	case n < 100:
		return append(buf, byte('0'+n/10), byte('0'+n%10), ':')
	case n < 1000:
		return append(buf, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10), ':')
	}
	return append(strconv.AppendInt(buf, int64(n), 10), ':')
}

func appendInt(buf []byte, n int64) []byte {
	var tmp [20]byte
	return appendDigits(buf, strconv.AppendInt(tmp[:0], n, 10))
}

func appendUint(buf []byte, n uint64) []byte {
	var tmp [20]byte
	return appendDigits(buf, strconv.AppendUint(tmp[:0], n, 10))
}

func appendDigits(buf, digits []byte) []byte {
	return append(appendLen(buf, len(digits)), digits...)
}

func appendNullable(buf []byte, s *string) []byte {
	if s == nil {
		return append(buf, '~')
	}
	return appendString(buf, *s)
}

// appendColumns writes cols as one netstring holding PostgreSQL's array output for text[]:
// {a,b}, with an element double-quoted (and " and \ backslash-escaped) when it is empty, reads
// NULL, or holds a quote, backslash, brace, comma or white space.
func appendColumns(buf []byte, cols []string) []byte {
	// The netstring's length comes first: measure the array text, then write it.
	n := 2
	var quoted uint64 // bit i: element i needs quotes (elements past 64 are checked again)
	for i, c := range cols {
		if i > 0 {
			n++
		}
		n += len(c)
		if needsQuotes(c) {
			n += 2 + strings.Count(c, `"`) + strings.Count(c, `\`)
			if i < 64 {
				quoted |= 1 << i
			}
		}
	}
	buf = append(appendLen(buf, n), '{')
	for i, c := range cols {
		if i > 0 {
			buf = append(buf, ',')
		}
		if i < 64 && quoted&(1<<i) == 0 || i >= 64 && !needsQuotes(c) {
			buf = append(buf, c...)
			continue
		}
		buf = append(buf, '"')
		for j := 0; j < len(c); j++ {
			if c[j] == '"' || c[j] == '\\' {
				buf = append(buf, '\\')
			}
			buf = append(buf, c[j])
		}
		buf = append(buf, '"')
	}
	return append(buf, '}')
}

func needsQuotes(s string) bool {
	if s == "" || len(s) == 4 && strings.EqualFold(s, "NULL") {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\', '{', '}', ',', ' ', '\t', '\n', '\r', '\v', '\f':
			return true
		}
	}
	return false
}
