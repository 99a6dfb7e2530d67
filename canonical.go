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
	buf = appendString(buf, strconv.FormatUint(e.TxID, 10))
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

func appendString(buf []byte, s string) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	return append(buf, s...)
}

func appendInt(buf []byte, n int64) []byte {
	var tmp [20]byte
	return appendString(buf, string(strconv.AppendInt(tmp[:0], n, 10)))
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
	var arr []byte
	arr = append(arr, '{')
	for i, c := range cols {
		if i > 0 {
			arr = append(arr, ',')
		}
		if !needsQuotes(c) {
			arr = append(arr, c...)
			continue
		}
		arr = append(arr, '"')
		for j := 0; j < len(c); j++ {
			if c[j] == '"' || c[j] == '\\' {
				arr = append(arr, '\\')
			}
			arr = append(arr, c[j])
		}
		arr = append(arr, '"')
	}
	arr = append(arr, '}')
	return appendString(buf, string(arr))
}

func needsQuotes(s string) bool {
	if s == "" || strings.EqualFold(s, "NULL") {
		return true
	}
	return strings.ContainsAny(s, "\"\\{}, \t\n\r\v\f")
}
