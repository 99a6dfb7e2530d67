package verify

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"
)

// xentry is what the cross-check keeps of an entry.
type xentry struct {
	seq        int64
	eventKey   uint64
	content    uint64
	hash       [sha256.Size]byte
	occurredAt int64
}

func toX(ents []entry) []xentry {
	out := make([]xentry, len(ents))
	for i := range ents {
		e := &ents[i]
		out[i] = xentry{seq: e.seq, eventKey: e.eventKey, content: e.content, hash: e.entryHash, occurredAt: e.occurredAt}
	}
	return out
}

// crossWindow is how far apart (in seq) the same entry may sit in the database and the archive
// and still be matched up: beyond it, it counts as deleted from one and inserted in the other.
const crossWindow = 10000

// pendingDB is a database entry waiting for its archived twin.
type pendingDB struct {
	xentry
	matched bool
}

// crossChecker compares the archive with the database, both walked in seq order. Entries are
// matched by event_id within a window, so that one inserted or deleted entry (with the chain
// recomputed after it, which the database check alone cannot see) is named as such instead of
// making every later entry look different.
type crossChecker struct {
	rep    *Report
	cutoff int64 // entries older than this (occurred_at, µs) must be archived
	since  int64 // entries up to this seq were checked by an earlier run

	db        <-chan []xentry
	dbBuf     []xentry
	dbDone    bool
	dbRead    int64 // highest seq read from the database
	dbLast    int64
	dbWin     map[uint64]*pendingDB // unmatched database entries by event
	dbQueue   []*pendingDB          // database entries in the window, in seq order
	arcQueue  []xentry              // unmatched archived entries, in seq order
	arcLast   int64
	arcGaps   [][2]int64 // seq ranges the archive skips (which its own check reports)
	lastMatch int64      // database seq of the last matched entry

	run problemRun
}

func newCrossChecker(rep *Report, db <-chan []xentry, since int64, cutoff time.Time) *crossChecker {
	return &crossChecker{rep: rep, db: db, since: since, cutoff: cutoff.UnixMicro(), dbWin: map[uint64]*pendingDB{}}
}

func (c *crossChecker) add(seq int64, kind Kind, detail string) {
	c.rep.add(Problem{Seq: seq, Kind: kind, Detail: detail, Source: SourceCross})
}

// pullDB reads database entries until seq upTo has been read or the database is done.
func (c *crossChecker) pullDB(upTo int64) {
	for !c.dbDone && c.dbRead < upTo {
		if len(c.dbBuf) == 0 {
			chunk, ok := <-c.db
			if !ok {
				c.dbDone = true
				return
			}
			c.dbBuf = chunk
			continue
		}
		d := &pendingDB{xentry: c.dbBuf[0]}
		c.dbBuf = c.dbBuf[1:]
		c.dbRead, c.dbLast = d.seq, d.seq
		if prev := c.dbWin[d.eventKey]; prev != nil {
			c.add(d.seq, Inserted, fmt.Sprintf("a second entry with the event_id of seq %d", prev.seq))
			d.matched = true
		} else {
			c.dbWin[d.eventKey] = d
		}
		c.dbQueue = append(c.dbQueue, d)
	}
}

// archived takes the next archived entry.
func (c *crossChecker) archived(a xentry) {
	if a.seq <= c.since {
		return
	}
	if from := max(c.arcLast, c.since) + 1; a.seq > from {
		c.arcGaps = append(c.arcGaps, [2]int64{from, a.seq - 1})
	}
	c.arcLast = a.seq
	c.pullDB(a.seq + crossWindow)
	d := c.dbWin[a.eventKey]
	if d == nil {
		c.arcQueue = append(c.arcQueue, a)
	} else {
		delete(c.dbWin, a.eventKey)
		d.matched = true
		c.rep.CrossChecked++
		if d.content != a.content {
			where := ""
			if d.seq != a.seq {
				where = fmt.Sprintf(" (archived at seq %d)", a.seq)
			}
			c.add(d.seq, Modified, "the database entry differs from the archived one"+where)
		}
		if d.seq < c.lastMatch {
			c.add(d.seq, Reordered, fmt.Sprintf("archived at seq %d, after the entry now at seq %d, but it sits before it in the database", a.seq, c.lastMatch))
		}
		c.lastMatch = max(c.lastMatch, d.seq)
	}
	c.settle(a.seq - crossWindow)
}

// settle decides about the entries below seq below: no later entry can match them any more.
func (c *crossChecker) settle(below int64) {
	for {
		dbNext, arcNext := int64(-1), int64(-1)
		if len(c.dbQueue) > 0 && c.dbQueue[0].seq < below {
			dbNext = c.dbQueue[0].seq
		}
		if len(c.arcQueue) > 0 && c.arcQueue[0].seq < below {
			arcNext = c.arcQueue[0].seq
		}
		switch {
		case dbNext < 0 && arcNext < 0:
			return
		case dbNext >= 0 && (arcNext < 0 || dbNext <= arcNext):
			d := c.dbQueue[0]
			c.dbQueue = c.dbQueue[1:]
			if d.matched {
				continue
			}
			delete(c.dbWin, d.eventKey)
			if arcNext == d.seq {
				// Unmatched on both sides at the same place: the entry was replaced.
				c.arcQueue = c.arcQueue[1:]
				c.run.flush(c)
				c.add(d.seq, Modified, "the database entry is not the one archived at this seq (another event_id): it was replaced")
				continue
			}
			c.dbOnly(d)
		default:
			a := c.arcQueue[0]
			c.arcQueue = c.arcQueue[1:]
			c.arcOnly(a)
		}
	}
}

// dbOnly reports a database entry the archive does not hold.
func (c *crossChecker) dbOnly(d *pendingDB) {
	for len(c.arcGaps) > 0 && c.arcGaps[0][1] < d.seq {
		c.arcGaps = c.arcGaps[1:]
	}
	switch {
	case len(c.arcGaps) > 0 && c.arcGaps[0][0] <= d.seq:
		c.run.extend(c, d.seq, MissingFromArchive)
	case d.seq <= c.arcLast:
		c.run.extend(c, d.seq, Inserted)
	case d.occurredAt < c.cutoff:
		c.run.extend(c, d.seq, MissingFromArchive)
	}
}

// arcOnly reports an archived entry the database does not hold.
func (c *crossChecker) arcOnly(a xentry) {
	if c.dbDone && a.seq > c.dbLast {
		c.run.extend(c, a.seq, MissingFromDatabase)
		return
	}
	c.run.extend(c, a.seq, Deleted)
}

// finish reads the rest of the database and decides about everything still open, a window at a
// time: after the archive's end the database may hold a long tail (or everything, if the archive
// is empty), which must not pile up in memory.
func (c *crossChecker) finish() {
	for !c.dbDone {
		c.pullDB(c.dbRead + crossWindow)
		c.settle(c.dbRead - crossWindow)
	}
	c.settle(1<<62 - 1)
	c.run.flush(c)
	slices.SortStableFunc(c.rep.Problems, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })
}

// problemRun collapses consecutive entries with the same problem into one report.
type problemRun struct {
	kind     Kind
	from, to int64
}

func (r *problemRun) extend(c *crossChecker, seq int64, kind Kind) {
	if r.from != 0 && r.kind == kind && seq == r.to+1 {
		r.to = seq
		return
	}
	r.flush(c)
	r.kind, r.from, r.to = kind, seq, seq
}

func (r *problemRun) flush(c *crossChecker) {
	if r.from == 0 {
		return
	}
	what := fmt.Sprintf("seq %d", r.from)
	if r.to > r.from {
		what = fmt.Sprintf("seq %d to %d (%d entries)", r.from, r.to, r.to-r.from+1)
	}
	var detail string
	switch r.kind {
	case Inserted:
		detail = what + ": in the database but not in the archive, which holds the entries around it: inserted after archiving"
	case Deleted:
		detail = what + ": archived, but gone from the database"
	case MissingFromArchive:
		detail = what + ": in the database for longer than the streaming lag, but not archived"
	case MissingFromDatabase:
		detail = what + ": archived, but beyond the end of the database's chain: its tail was removed"
	}
	c.add(r.from, r.kind, detail)
	r.from = 0
}
