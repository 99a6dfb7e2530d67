package pgtrail

import (
	"crypto/sha256"
	"math"
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
	var c *CanonicalEncoder
	return c.Append(buf, e)
}

// CanonicalEncoder writes what AppendCanonical writes, faster over a run of entries such as a
// file's or a table's rows, which mostly count seq up by one, repeat the time and transaction of
// the row before and take changed_columns from a few lists: it keeps the last of each encoded.
// The field sequence is written once, here, for both (verification used a copy of its own).
// A nil *CanonicalEncoder keeps nothing. Not safe for concurrent use.
type CanonicalEncoder struct {
	// The last changed_columns encoded: its elements concatenated (copies: an entry's strings
	// may alias memory that is reused), their lengths, and its netstring.
	colsKey  []byte
	colsLens []int
	colsEnc  []byte
	colsOK   bool

	seq, occurredAt, txid numberCache
}

// Append appends the canonical encoding of e (version 1) to buf and returns it.
func (c *CanonicalEncoder) Append(buf []byte, e *Event) []byte {
	buf = append(buf, CanonicalVersion...)
	buf = append(buf, '\n')
	if c == nil {
		buf = appendInt(buf, e.Seq)
		buf = appendString(buf, e.EventID)
		buf = appendInt(buf, e.OccurredAt.UnixMicro())
		buf = appendUint(buf, e.TxID)
	} else {
		buf = c.seq.appendInt(buf, e.Seq)
		buf = appendString(buf, e.EventID)
		buf = c.occurredAt.appendInt(buf, e.OccurredAt.UnixMicro())
		if e.TxID <= math.MaxInt64 {
			buf = c.txid.appendInt(buf, int64(e.TxID))
		} else {
			buf = appendUint(buf, e.TxID)
		}
	}
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
	if c == nil {
		buf = appendColumns(buf, e.ChangedColumns)
	} else {
		buf = c.appendColumns(buf, e.ChangedColumns)
	}
	buf = appendNullable(buf, e.BeforeState)
	buf = appendNullable(buf, e.AfterState)
	buf = appendNullable(buf, e.Details)
	return buf
}

// appendColumns appends changed_columns' netstring, from the cache when cols is the list
// encoded last.
func (c *CanonicalEncoder) appendColumns(buf []byte, cols []string) []byte {
	if c.colsOK && c.sameColumns(cols) {
		return append(buf, c.colsEnc...)
	}
	c.colsEnc = appendColumns(c.colsEnc[:0], cols)
	c.colsKey, c.colsLens = c.colsKey[:0], c.colsLens[:0]
	for _, s := range cols {
		c.colsKey = append(c.colsKey, s...)
		c.colsLens = append(c.colsLens, len(s))
	}
	c.colsOK = true
	return append(buf, c.colsEnc...)
}

func (c *CanonicalEncoder) sameColumns(cols []string) bool {
	if len(cols) != len(c.colsLens) {
		return false
	}
	key := c.colsKey
	for i, s := range cols {
		n := c.colsLens[i]
		if len(s) != n || s != string(key[:n]) {
			return false
		}
		key = key[n:]
	}
	return true
}

// numberCache holds a number and its netstring.
type numberCache struct {
	n   int64
	enc []byte // "<digits>:<n>"; empty before the first number
}

// appendInt appends n's netstring: the cached one when n is the number before, or that one
// counted up by one in place when n follows it.
func (c *numberCache) appendInt(buf []byte, n int64) []byte {
	switch {
	case len(c.enc) > 0 && n == c.n:
	case len(c.enc) > 0 && c.n >= 0 && c.n < math.MaxInt64 && n == c.n+1 && c.increment():
		c.n = n
	default:
		c.n, c.enc = n, appendInt(c.enc[:0], n)
	}
	return append(buf, c.enc...)
}

// increment adds one to the cached digits, unless that takes another digit (…999).
func (c *numberCache) increment() bool {
	for i := len(c.enc) - 1; i >= 0 && c.enc[i] != ':'; i-- {
		if c.enc[i] != '9' {
			c.enc[i]++
			return true
		}
		c.enc[i] = '0'
	}
	// All nines: put them back and encode afresh.
	for i := len(c.enc) - 1; i >= 0 && c.enc[i] != ':'; i-- {
		c.enc[i] = '9'
	}
	return false
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
	if n < 0 {
		var tmp [21]byte
		return appendDigits(buf, strconv.AppendInt(tmp[:0], n, 10))
	}
	return appendUint(buf, uint64(n))
}

// appendUint writes n's decimal digits as a netstring, two digits at a time, straight into buf.
func appendUint(buf []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for n >= 100 {
		q := n / 100
		r := n - q*100
		i -= 2
		tmp[i], tmp[i+1] = digitPairs[2*r], digitPairs[2*r+1]
		n = q
	}
	if n >= 10 {
		i -= 2
		tmp[i], tmp[i+1] = digitPairs[2*n], digitPairs[2*n+1]
	} else {
		i--
		tmp[i] = byte('0' + n)
	}
	return appendDigits(buf, tmp[i:])
}

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

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
