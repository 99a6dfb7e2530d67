package verify

import (
	"math"
	"strconv"
	"sync"

	"github.com/pgtrail/pgtrail"
)

// canonicalEncoder writes the canonical encoding of entries: the bytes pgtrail.AppendCanonical
// writes (TestCanonicalEncoder_MatchesAppendCanonical holds the two together, and docs/design.md
// is the specification), written faster because verification encodes every entry of the trail.
// Numbers are formatted in place, and changed_columns, which the rows of a trail mostly repeat
// from a few lists, is copied from the previous entry's encoding when the list is the same.
// One per hasher; not safe for concurrent use.
type canonicalEncoder struct {
	// The last changed_columns encoded: its elements concatenated (copies: the entries' strings
	// alias pages that are reused), their lengths, and its netstring.
	colsKey  []byte
	colsLens []int
	colsEnc  []byte
	colsOK   bool
	scratch  []byte

	// seq, occurred_at and txid of the last entry, encoded: a file's rows mostly count seq up
	// by one and repeat the time and transaction of the row before.
	seq, occurredAt, txid numberCache
}

const canonicalHeader = pgtrail.CanonicalVersion + "\n"

// append appends the canonical encoding of e to buf.
func (c *canonicalEncoder) append(buf []byte, e *pgtrail.Event) []byte {
	buf = append(buf, canonicalHeader...)
	buf = c.seq.appendInt(buf, e.Seq)
	buf = appendCanonString(buf, e.EventID)
	buf = c.occurredAt.appendInt(buf, e.OccurredAt.UnixMicro())
	if e.TxID <= math.MaxInt64 {
		buf = c.txid.appendInt(buf, int64(e.TxID))
	} else {
		buf = appendCanonUint(buf, e.TxID)
	}
	buf = appendCanonString(buf, e.ActionType)
	buf = appendCanonString(buf, e.ResourceType)
	buf = appendCanonNullable(buf, e.ResourceID)
	buf = appendCanonString(buf, e.Outcome)
	buf = appendCanonString(buf, e.ActorID)
	buf = appendCanonNullable(buf, e.ActorIP)
	buf = appendCanonNullable(buf, e.ActorIPRaw)
	buf = appendCanonNullable(buf, e.ActorUserAgent)
	buf = appendCanonNullable(buf, e.RequestID)
	buf = appendCanonNullable(buf, e.TenantID)
	buf = appendCanonString(buf, e.DBUser)
	buf = appendCanonNullable(buf, e.ApplicationName)
	buf = appendCanonNullable(buf, e.ClientAddr)
	buf = c.appendColumns(buf, e.ChangedColumns)
	buf = appendCanonNullable(buf, e.BeforeState)
	buf = appendCanonNullable(buf, e.AfterState)
	buf = appendCanonNullable(buf, e.Details)
	return buf
}

// appendColumns appends changed_columns' netstring, from the cache when cols is the list
// encoded last.
func (c *canonicalEncoder) appendColumns(buf []byte, cols []string) []byte {
	if c.colsOK && c.sameColumns(cols) {
		return append(buf, c.colsEnc...)
	}
	// pgtrail's own encoding of the list, cut out of an entry that holds only the list: the
	// array quoting rules stay in one place.
	c.scratch = pgtrail.AppendCanonical(c.scratch[:0], &pgtrail.Event{ChangedColumns: cols})
	c.colsEnc = append(c.colsEnc[:0], c.scratch[columnsOffset():len(c.scratch)-len(nullTail)]...)
	c.colsKey, c.colsLens = c.colsKey[:0], c.colsLens[:0]
	for _, s := range cols {
		c.colsKey = append(c.colsKey, s...)
		c.colsLens = append(c.colsLens, len(s))
	}
	c.colsOK = true
	return append(buf, c.colsEnc...)
}

func (c *canonicalEncoder) sameColumns(cols []string) bool {
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

// nullTail is what follows changed_columns in the encoding of an entry whose before_state,
// after_state and details are NULL.
const nullTail = "~~~"

// columnsOffset is where changed_columns starts in the encoding of the zero entry (with the
// list set), measured once from pgtrail.AppendCanonical.
var columnsOffset = sync.OnceValue(func() int {
	zero := pgtrail.AppendCanonical(nil, &pgtrail.Event{ChangedColumns: []string{}})
	return len(zero) - len("2:{}") - len(nullTail)
})

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
		c.n, c.enc = n, appendCanonInt(c.enc[:0], n)
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

func appendCanonString(buf []byte, s string) []byte {
	return append(appendCanonLen(buf, len(s)), s...)
}

func appendCanonNullable(buf []byte, s *string) []byte {
	if s == nil {
		return append(buf, '~')
	}
	return append(appendCanonLen(buf, len(*s)), *s...)
}

// appendCanonLen writes a netstring's "<length>:".
func appendCanonLen(buf []byte, n int) []byte {
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

func appendCanonInt(buf []byte, n int64) []byte {
	if n < 0 {
		var tmp [21]byte
		d := strconv.AppendInt(tmp[:0], n, 10)
		return append(appendCanonLen(buf, len(d)), d...)
	}
	return appendCanonUint(buf, uint64(n))
}

// appendCanonUint writes n's decimal digits as a netstring, two digits at a time, straight into
// buf.
func appendCanonUint(buf []byte, n uint64) []byte {
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
	return append(appendCanonLen(buf, len(tmp)-i), tmp[i:]...)
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
