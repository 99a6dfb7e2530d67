package verify

import (
	"crypto/sha256"
	"fmt"
)

// checker walks hashed entries in seq order and records the breaks between them.
type checker struct {
	rep      *Report
	source   Source
	prevSeq  int64
	prevHash [sha256.Size]byte // genesis (zeros) before the first entry
	// keys are the data files of the archive batch being walked: entry.file indexes them.
	keys []string
}

func newChecker(rep *Report, source Source) *checker {
	return &checker{rep: rep, source: source}
}

// anchor makes the walk continue after an entry verified by an earlier run.
func (c *checker) anchor(seq int64, hash [sha256.Size]byte) {
	c.prevSeq, c.prevHash = seq, hash
}

func (c *checker) add(seq int64, kind Kind, key, detail string) {
	c.rep.add(Problem{Seq: seq, Kind: kind, Detail: detail, Source: c.source, Key: key})
}

// keyOf returns the archive data file holding e, "" for the database.
func (c *checker) keyOf(e *entry) string {
	if e.file <= 0 || int(e.file) > len(c.keys) {
		return ""
	}
	return c.keys[e.file-1]
}

func (c *checker) next(e *entry) {
	c.rep.Entries++
	if c.rep.Entries == 1 {
		c.rep.FirstSeq = e.seq
	}
	c.rep.LastSeq = e.seq
	expected := c.prevSeq + 1
	switch {
	case e.seq <= c.prevSeq:
		c.add(e.seq, Inserted, c.keyOf(e), "a second entry with the same seq")
	case e.seq == expected+1:
		c.add(expected, Deleted, "", fmt.Sprintf("entry %d is missing", expected))
	case e.seq > expected:
		c.add(expected, Deleted, "", fmt.Sprintf("entries %d to %d are missing", expected, e.seq-1))
	}
	switch {
	case e.badHash:
		c.add(e.seq, Modified, c.keyOf(e), "its prev_hash or entry_hash is not a SHA-256 sum")
	case !e.selfOK && e.chainedAt != 0:
		c.add(e.seq, Reordered, c.keyOf(e), fmt.Sprintf("the entry at seq %d was chained at seq %d", e.seq, e.chainedAt))
	case !e.selfOK:
		c.add(e.seq, Modified, c.keyOf(e), "its content does not match its entry_hash")
	case e.prevHash != c.prevHash && e.seq == expected:
		c.add(e.seq, Relinked, c.keyOf(e), fmt.Sprintf("prev_hash does not match the entry_hash of seq %d: one of them was rewritten", c.prevSeq))
	}
	if e.warned && e.selfOK {
		c.add(e.seq, CaptureWarning, c.keyOf(e), "a gap in capture (a CAPTURE_GAP entry, or details.capture_warning): a capture trigger turned off, a change made with pgtrail's triggers disabled, an incomplete before image, a slot created anew")
	}
	c.prevSeq = e.seq
	c.prevHash = e.entryHash
}
