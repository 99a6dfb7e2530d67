// Package verify recomputes pgtrail's hash chain and reports where and how it breaks.
package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/chain"
)

// Kind names how the chain was broken.
type Kind string

// The kinds of damage verification tells apart.
const (
	Modified  Kind = "modified"  // an entry's content no longer matches its hash
	Deleted   Kind = "deleted"   // entries are missing (a gap in seq, or a truncated tail)
	Inserted  Kind = "inserted"  // an entry that the chain never held (duplicate seq, beyond the head)
	Reordered Kind = "reordered" // an intact entry sits at another position than the one it was chained at
	Relinked  Kind = "relinked"  // an entry's prev_hash does not match its predecessor's entry_hash
)

// Problem is one break in the chain.
type Problem struct {
	Seq    int64  `json:"seq"`
	Kind   Kind   `json:"kind"`
	Detail string `json:"detail"`
}

// Report is the outcome of a verification run.
type Report struct {
	Entries     int64     `json:"entries"`
	FirstSeq    int64     `json:"first_seq"`
	LastSeq     int64     `json:"last_seq"`
	HeadSeq     int64     `json:"head_seq"`
	HeadHash    string    `json:"head_hash"`
	Unsealed    int64     `json:"unsealed"`
	Problems    []Problem `json:"problems"`
	Truncated   bool      `json:"problems_truncated,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	EntriesPerS float64   `json:"entries_per_second"`
}

// Intact reports whether no problem was found.
func (r *Report) Intact() bool { return len(r.Problems) == 0 }

// maxProblems bounds a report: after a break, every later entry may be reported, which helps nobody.
const maxProblems = 100

// reorderWindow is how far from its position an entry is searched for when its hash does not match.
const reorderWindow = 64

func (r *Report) add(p Problem) {
	if len(r.Problems) >= maxProblems {
		r.Truncated = true
		return
	}
	r.Problems = append(r.Problems, p)
}

// Querier is what DB needs from a connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB recomputes every entry's hash from the rows of audit.events and checks the links between
// them and the chain head. An error means the check could not be done (connection, permission);
// damage is reported in the Report.
func DB(ctx context.Context, db Querier) (*Report, error) {
	rep := &Report{StartedAt: time.Now()}
	var headHash []byte
	err := db.QueryRow(ctx, `SELECT h.seq, h.entry_hash, (SELECT count(*) FROM audit.pending) FROM audit.chain_head h`).
		Scan(&rep.HeadSeq, &headHash, &rep.Unsealed)
	if err != nil {
		return nil, fmt.Errorf("read chain head: %w", err)
	}
	rep.HeadHash = fmt.Sprintf("%x", headHash)

	c := newChecker(rep)
	if err := Each(ctx, db, func(e *pgtrail.Event) error { c.next(e); return nil }); err != nil {
		return nil, err
	}
	c.finish(rep.HeadSeq, headHash)
	rep.FinishedAt = time.Now()
	if d := rep.FinishedAt.Sub(rep.StartedAt).Seconds(); d > 0 {
		rep.EntriesPerS = float64(rep.Entries) / d
	}
	return rep, nil
}

// Each calls fn for every entry of audit.events in chain order (see chain.Read).
func Each(ctx context.Context, db Querier, fn func(*pgtrail.Event) error) error {
	return chain.Read(ctx, db, 1, math.MaxInt64, fn)
}

// checker walks entries in seq order and records problems.
type checker struct {
	rep      *Report
	prevSeq  int64
	prevHash []byte
	buf      []byte
}

func newChecker(rep *Report) *checker {
	return &checker{rep: rep, prevHash: pgtrail.GenesisHash}
}

func (c *checker) next(e *pgtrail.Event) {
	c.rep.Entries++
	if c.rep.Entries == 1 {
		c.rep.FirstSeq = e.Seq
	}
	c.rep.LastSeq = e.Seq
	expected := c.prevSeq + 1
	var sum [32]byte
	sum, c.buf = e.Hash(c.buf)
	selfOK := bytes.Equal(sum[:], e.EntryHash)

	switch {
	case e.Seq == c.prevSeq:
		c.rep.add(Problem{e.Seq, Inserted, "a second entry with the same seq"})
	case e.Seq > expected:
		c.rep.add(Problem{expected, Deleted, fmt.Sprintf("entries %d to %d are missing", expected, e.Seq-1)})
	}
	switch {
	case !selfOK:
		if at, ok := c.findPosition(e); ok {
			c.rep.add(Problem{e.Seq, Reordered, fmt.Sprintf("the entry at seq %d was chained at seq %d", e.Seq, at)})
		} else {
			c.rep.add(Problem{e.Seq, Modified, "its content does not match its entry_hash"})
		}
	case !bytes.Equal(e.PrevHash, c.prevHash) && e.Seq == expected:
		c.rep.add(Problem{e.Seq, Relinked, fmt.Sprintf("prev_hash does not match the entry_hash of seq %d: one of them was rewritten", c.prevSeq)})
	}
	c.prevSeq = e.Seq
	c.prevHash = e.EntryHash
}

// findPosition looks for the seq at which e's content does hash to its entry_hash.
func (c *checker) findPosition(e *pgtrail.Event) (int64, bool) {
	orig := e.Seq
	defer func() { e.Seq = orig }()
	for d := int64(1); d <= reorderWindow; d++ {
		for _, s := range []int64{orig - d, orig + d} {
			if s < 1 {
				continue
			}
			e.Seq = s
			var sum [32]byte
			sum, c.buf = e.Hash(c.buf)
			if bytes.Equal(sum[:], e.EntryHash) {
				return s, true
			}
		}
	}
	return 0, false
}

func (c *checker) finish(headSeq int64, headHash []byte) {
	switch {
	case c.prevSeq < headSeq:
		c.rep.add(Problem{c.prevSeq + 1, Deleted, fmt.Sprintf("the chain head is at seq %d but the last entry is seq %d: the tail was removed", headSeq, c.prevSeq)})
	case c.prevSeq > headSeq:
		c.rep.add(Problem{headSeq + 1, Inserted, fmt.Sprintf("entries after the chain head (seq %d) up to seq %d were never sealed", headSeq, c.prevSeq)})
	case headSeq > 0 && !bytes.Equal(c.prevHash, headHash):
		c.rep.add(Problem{headSeq, Modified, "the last entry's entry_hash differs from the chain head's"})
	}
}

// ErrTampered is returned by callers that turn a damaged report into an error.
var ErrTampered = errors.New("audit chain is broken")
