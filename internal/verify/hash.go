package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"strings"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/verify/pqread"
)

// entry is an entry as the in-order checks see it, after hashing: its place, its stored links,
// and whether its content matches its hash. It holds no reference to the row it came from, so
// the row's buffers can be reused as soon as it is hashed.
type entry struct {
	seq       int64
	prevHash  [sha256.Size]byte
	entryHash [sha256.Size]byte
	// chainedAt, when the content does not hash to entryHash at seq, is the nearby seq at which it
	// does (the entry was moved); 0 when none does.
	chainedAt int64

	// What the cross-check compares: an identity, the content without its position, and the
	// age. eventKey and content are keyed hashes (maphash, random seed per process).
	eventKey   uint64
	content    uint64
	occurredAt int64 // microseconds since the Unix epoch

	// file is 1 + the index of the archive data file holding the entry in its batch's keys
	// (checker.keys), 0 for the database. An index, not the key: entries hold no pointer, so
	// the garbage collector never scans the megabytes of them that a run keeps in flight.
	file int32
	// selfOK: the content hashes to entryHash (given prevHash).
	selfOK bool
	// badHash: prev_hash or entry_hash is not a SHA-256 sum.
	badHash bool
	// warned: details carry a capture_warning (see CaptureWarning).
	warned bool
	// (The small fields last: in declaration order they would pad the entry from 112 to 128
	// bytes.)
}

// captureWarningKey marks an entry the stream flagged (see CaptureWarning), as jsonb prints it.
const captureWarningKey = `"capture_warning": `

// topLevelWarning reports whether details has capture_warning as a top-level key (not inside a
// value: a VERIFY event names the kinds it found). Parsed only when the key's text is there.
func topLevelWarning(details string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(details), &m) != nil {
		return false
	}
	_, ok := m["capture_warning"]
	return ok
}

// reorderWindow is how far from its position an entry is searched for when its hash does not match.
const reorderWindow = 64

// crossSeed keys the fingerprints the cross-check compares, so that nobody can choose colliding
// contents in advance.
var crossSeed = maphash.MakeSeed()

// hasher turns events into entries. Each worker has its own.
type hasher struct {
	buf   []byte // prev_hash ‖ canonical encoding: hashed in one call, without a digest's buffering
	cross bool   // fill eventKey and content
	enc   pgtrail.CanonicalEncoder

	// The hash computed last and its hex: the next row's prev_hash, in hex, is usually the
	// same, and is then taken from here instead of decoded.
	lastSum [sha256.Size]byte
	lastHex [2 * sha256.Size]byte
}

func newHasher(cross bool) *hasher {
	return &hasher{buf: make([]byte, 0, 4096), cross: cross}
}

// sum returns the entry hash of e: SHA-256(prev_hash ‖ canonical), and leaves the canonical
// encoding in h.buf[sha256.Size:].
func (h *hasher) sum(e *pgtrail.Event) [sha256.Size]byte {
	h.buf = append(h.buf[:0], e.PrevHash...)
	h.buf = h.enc.Append(h.buf, e)
	return sha256.Sum256(h.buf)
}

// hash fills out from e.
func (h *hasher) hash(e *pgtrail.Event, out *entry) { h.hashHex(e, nil, out) }

// hashHex is hash for an event whose entry_hash is still in hex (as archived) in entryHex: the
// hex of the computed hash is compared with it, and it is decoded only when they differ.
func (h *hasher) hashHex(e *pgtrail.Event, entryHex []byte, out *entry) {
	*out = entry{seq: e.Seq, occurredAt: e.OccurredAt.UnixMicro()}
	copy(out.prevHash[:], e.PrevHash)
	sum := h.sum(e)
	if entryHex != nil {
		h.lastSum = sum
		encodeHexHash(&h.lastHex, &sum)
		e.EntryHash = nil
		if string(h.lastHex[:]) == string(entryHex) {
			out.entryHash = sum
			e.EntryHash = out.entryHash[:]
		} else if decodeHexHash(&out.entryHash, entryHex) != nil {
			e.EntryHash = out.entryHash[:]
		}
	} else {
		copy(out.entryHash[:], e.EntryHash)
	}
	if len(e.PrevHash) != sha256.Size || len(e.EntryHash) != sha256.Size {
		out.badHash = true
	}
	out.selfOK = !out.badHash && sum == out.entryHash
	// A CAPTURE_GAP entry is a gap in capture whoever wrote it (since schema version 8 only
	// pgtrail writes that type): the stream, or the event trigger that saw a capture trigger
	// turned off (schema 10), which cannot flag details.capture_warning (audit.pending refuses it).
	out.warned = e.ActionType == "CAPTURE_GAP" ||
		e.Details != nil && strings.Contains(*e.Details, captureWarningKey) && topLevelWarning(*e.Details)
	if h.cross {
		out.eventKey = maphash.String(crossSeed, e.EventID)
		out.content = maphash.Bytes(crossSeed, h.buf[len(e.PrevHash)+seqFieldEnd(e.Seq):])
	}
	if !out.selfOK && !out.badHash {
		out.chainedAt = h.findPosition(e)
	}
}

// prevHash sets e.PrevHash from prevHex, a prev_hash in hex, decoded into dst: taken from the
// hash computed last when it is that hash's hex (the row before in the same file is usually
// the entry before in the chain), decoded otherwise.
func (h *hasher) prevHash(e *pgtrail.Event, dst *[sha256.Size]byte, prevHex []byte) {
	if string(prevHex) == string(h.lastHex[:]) {
		*dst = h.lastSum
		e.PrevHash = dst[:]
		return
	}
	e.PrevHash = decodeHexHash(dst, prevHex)
}

// hexPairs holds the two lowercase hex digits of each byte value, first digit in the low byte.
var hexPairs = func() (t [256]uint16) {
	const digits = "0123456789abcdef"
	for b := range t {
		t[b] = uint16(digits[b>>4]) | uint16(digits[b&15])<<8
	}
	return t
}()

// hexNibbles maps a hex digit (either case) to its value, anything else to 0xff.
var hexNibbles = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = byte(c - '0')
		case c >= 'a' && c <= 'f':
			t[c] = byte(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			t[c] = byte(c - 'A' + 10)
		default:
			t[c] = 0xff
		}
	}
	return t
}()

// encodeHexHash writes sum in lowercase hex to dst.
func encodeHexHash(dst *[2 * sha256.Size]byte, sum *[sha256.Size]byte) {
	for i, b := range sum {
		binary.LittleEndian.PutUint16(dst[2*i:], hexPairs[b])
	}
}

// decodeHexHash decodes a hex SHA-256 into dst and returns it; anything else yields nil (an
// empty hash, which the hasher reports).
func decodeHexHash(dst *[sha256.Size]byte, h []byte) []byte {
	if len(h) != 2*sha256.Size {
		return nil
	}
	h = h[:2*sha256.Size]
	var bad byte
	for i := range dst {
		hi, lo := hexNibbles[h[2*i]], hexNibbles[h[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	if bad&0xf0 != 0 {
		clear(dst[:])
		return nil
	}
	return dst[:]
}

// seqFieldEnd returns the offset of the field after seq in a canonical encoding: the content of
// an entry without its position.
func seqFieldEnd(seq int64) int {
	var tmp [24]byte
	digits := len(strconv.AppendInt(tmp[:0], seq, 10))
	return len(pgtrail.CanonicalVersion) + 1 + len(strconv.AppendInt(tmp[:0], int64(digits), 10)) + 1 + digits
}

// findPosition looks for the seq near e.Seq at which e's content does hash to its entry_hash.
func (h *hasher) findPosition(e *pgtrail.Event) int64 {
	orig := e.Seq
	defer func() { e.Seq = orig }()
	for d := int64(1); d <= reorderWindow; d++ {
		for _, s := range []int64{orig - d, orig + d} {
			if s < 1 {
				continue
			}
			e.Seq = s
			if sum := h.sum(e); bytes.Equal(sum[:], e.EntryHash) {
				return s
			}
		}
	}
	return 0
}

// hashRow hashes a decoded row into out.
func (h *hasher) hashRow(r *pqread.Row, out *entry) {
	if r.PrevHex != nil {
		h.prevHash(&r.Event, &r.Prev, r.PrevHex)
	}
	if r.EntryHex != nil {
		h.hashHex(&r.Event, r.EntryHex, out)
		return
	}
	h.hash(&r.Event, out)
}
