package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/pace"
)

// Querier is what DB needs from a connection: a *pgx.Conn, a *pgxpool.Pool or *pgxpool.Conn, or
// a pgx.Tx (whose snapshot is then used as it is).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB recomputes every entry's hash from the rows of audit.events and checks the links between
// them and the chain head, with the zero Verifier. An error means the check could not be done
// (connection, permission); damage is reported in the Report.
func DB(ctx context.Context, db Querier) (*Report, error) {
	return (&Verifier{}).DB(ctx, db)
}

// Each calls fn for every entry of audit.events in chain order (see chain.Read).
func Each(ctx context.Context, db Querier, fn func(*pgtrail.Event) error) error {
	return chain.Read(ctx, db, 1, math.MaxInt64, fn)
}

// DB recomputes the hash of every entry of audit.events (with v.Since, of the checkpointed entry
// and those after it) and checks the links between them, the gapless seq and the chain head, all
// in one snapshot. It reads the rows with COPY in binary format and hashes them on v.Workers
// goroutines while the next rows arrive.
func (v *Verifier) DB(ctx context.Context, db Querier) (*Report, error) {
	rep := &Report{Scope: "db", StartedAt: time.Now(), Since: v.Since}
	err := inSnapshot(ctx, db, func(tx pgx.Tx, owned bool) error {
		return v.walkDB(ctx, tx, owned, rep, nil)
	})
	if err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// inSnapshot runs fn in a read-only REPEATABLE READ transaction, so that the chain head and the
// rows are read from the same snapshot while the sealer goes on appending. owned tells fn that
// the transaction is this package's (not a caller's), so its snapshot may be shared.
func inSnapshot(ctx context.Context, db Querier, fn func(tx pgx.Tx, owned bool) error) error {
	var conn *pgx.Conn
	switch d := db.(type) {
	case pgx.Tx:
		return fn(d, false)
	case *pgx.Conn:
		conn = d
	case *pgxpool.Conn:
		conn = d.Conn()
	case *pgxpool.Pool:
		c, err := d.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer c.Release()
		conn = c.Conn()
	default:
		return fmt.Errorf("verify: unsupported connection type %T", db)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx, true); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// walkDB checks the chain in tx's snapshot into rep. When cross is set, it also receives every
// checked entry after the checkpoint, in seq order.
func (v *Verifier) walkDB(ctx context.Context, tx pgx.Tx, owned bool, rep *Report, cross func([]entry) error) error {
	var headHash []byte
	err := tx.QueryRow(ctx, `SELECT h.seq, h.entry_hash, (SELECT count(*) FROM audit.pending) FROM audit.chain_head h`).
		Scan(&rep.HeadSeq, &headHash, &rep.Unsealed)
	if err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	rep.HeadHash = hex.EncodeToString(headHash)

	c := newChecker(rep, SourceDB)
	from := int64(1)
	var anchor *anchorCheck
	switch p := v.Pruned; {
	case v.Since != nil && (p == nil || v.Since.Seq > p.Seq):
		if anchor, err = newAnchor(v.Since, c); err != nil {
			return err
		}
		from = v.Since.Seq
	case p != nil:
		// The chain starts after the pruned entries (a checkpoint among them is gone with them).
		if len(p.EntryHash) != sha256.Size || p.Seq < 1 {
			return fmt.Errorf("verify: pruned prefix at seq %d has no SHA-256 entry hash", p.Seq)
		}
		var h [sha256.Size]byte
		copy(h[:], p.EntryHash)
		c.anchor(p.Seq, h)
		from = p.Seq + 1
	}
	total := max(rep.HeadSeq-from+1, 0)
	err = v.pipelineDB(ctx, tx, owned, rep, from, cross != nil, func(ents []entry) error {
		if anchor != nil {
			ents = anchor.take(ents)
		}
		for i := range ents {
			c.next(&ents[i])
		}
		v.progress("db", rep.Entries, total)
		if cross != nil && len(ents) > 0 {
			return cross(ents)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if anchor != nil {
		anchor.take(nil)
	}
	if anchor == nil || !anchor.missing || rep.Entries > 0 || rep.HeadSeq >= v.Since.Seq {
		// (When the chain now ends before a checkpointed entry that is gone, "gone" says it all.)
		c.finishHead(rep.HeadSeq, headHash)
	}
	if rep.Intact() && c.prevSeq > 0 {
		rep.Checkpoint = &Checkpoint{Version: CheckpointVersion, Scope: "db", Seq: c.prevSeq,
			EntryHash: hex.EncodeToString(c.prevHash[:])}
	}
	return nil
}

// anchorCheck checks the entry an incremental run starts from: the checkpointed one, which
// must still be there and unchanged, before the entries after it are walked.
type anchorCheck struct {
	cp      *Checkpoint
	hash    [sha256.Size]byte
	c       *checker
	done    bool
	missing bool
}

func newAnchor(cp *Checkpoint, c *checker) (*anchorCheck, error) {
	h, err := cp.hash()
	if err != nil {
		return nil, err
	}
	return &anchorCheck{cp: cp, hash: h, c: c}, nil
}

// take checks the anchor against the first entries the walk sees (nil at the end: none came)
// and returns the entries that follow it.
func (a *anchorCheck) take(ents []entry) []entry {
	if a.done {
		return ents
	}
	a.done = true
	seq := a.cp.Seq
	when := a.cp.VerifiedAt.Format(time.RFC3339)
	switch {
	case len(ents) == 0 || ents[0].seq != seq:
		a.missing = true
		a.c.add(seq, Deleted, "", fmt.Sprintf("the checkpointed entry (seq %d, verified %s) is gone", seq, when))
	case !ents[0].selfOK || ents[0].entryHash != a.hash:
		a.c.add(seq, Modified, "", fmt.Sprintf("the checkpointed entry (seq %d) changed since it was verified %s", seq, when))
		ents = ents[1:]
	default:
		ents = ents[1:]
	}
	a.c.anchor(seq, a.hash)
	return ents
}

// finishHead compares the end of the walk with the chain head.
func (c *checker) finishHead(headSeq int64, headHash []byte) {
	switch {
	case c.prevSeq < headSeq:
		c.add(c.prevSeq+1, Deleted, "", fmt.Sprintf("the chain head is at seq %d but the last entry is seq %d: the tail was removed", headSeq, c.prevSeq))
	case c.prevSeq > headSeq:
		c.add(headSeq+1, Inserted, "", fmt.Sprintf("entries after the chain head (seq %d) up to seq %d were never sealed", headSeq, c.prevSeq))
	case headSeq > 0 && string(c.prevHash[:]) != string(headHash):
		c.add(headSeq, Modified, "", "the last entry's entry_hash differs from the chain head's")
	}
}

// Parallel reading: the server formats rows (jsonb and inet as text) more slowly than the
// verifier hashes them, so DB can read with several COPY streams at once, each on its own
// connection in the same snapshot, each taking the next chunk of seq no other has taken (a stream
// that connects late, or reads slowly, reads less). Each stream has its own batches,
// enough for one chunk: it reads its next chunk while the checks consume the earlier ones, and
// memory stays bounded by streams × chunk. A second backend costs server CPU (on the 2-core
// bench machine ≈ 0.7 µs per row more in all: each new backend faults in shared_buffers, and two
// contend), so more streams pay off only where the server has cores to spare.
const (
	// DefaultDBStreams is Verifier.DBStreams's default, for a server on another machine (see
	// defaultStreams).
	DefaultDBStreams = 2
	dbChunkRows      = 8192
)

// defaultStreams is how many streams read when Verifier.DBStreams does not say: DefaultDBStreams,
// but no more than one per two cores when the server is on this machine (server is its address,
// as the connection has it). A server here shares the cores: each stream's backend takes one
// while the workers hash. On the 2-core bench machine, 5 interleaved rounds on its 1.55M-entry
// trail: one stream 0.97–1.08 of COPY's speed (median 0.99), two 0.90–0.99 (0.92) with half as
// much CPU again.
func defaultStreams(server net.Addr, cores int) int {
	if isLocal(server) {
		return max(1, min(DefaultDBStreams, cores/2))
	}
	return DefaultDBStreams
}

// isLocal tells whether addr is on this machine: a Unix socket or a loopback address.
func isLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}

// dbChunk is a range of seq one COPY reads; its batches go to the checks in order.
type dbChunk struct {
	from, to int64 // to < 0: to the end
	batches  chan *dbBatch
}

// planChunks cuts seq from..head into chunks for n streams; the last chunk is open-ended, so that
// rows beyond the head are read too.
func planChunks(from, head int64, n int) []*dbChunk {
	per := int64(dbChunkRows)
	count := int64(1)
	if n > 1 && head >= from {
		count = max((head-from+per)/per, 1)
	}
	chunks := make([]*dbChunk, count)
	for i := range chunks {
		lo := from + int64(i)*per
		hi := lo + per - 1
		if i == len(chunks)-1 {
			hi = -1
		}
		chunks[i] = &dbChunk{from: lo, to: hi, batches: make(chan *dbBatch, dbChunkRows/dbBatchRows+2)}
	}
	return chunks
}

// dbStream is a connection that reads COPY; close ends what this package opened.
type dbStream struct {
	conn  *pgconn.PgConn
	close func()
}

// startStreams sends the connections to read with on the channel it returns, and closes it once
// all are sent. tx's own connection comes first, at once, so that reading starts while the
// others connect. With tx this package's own and a trail of at least a chunk, up to n-1 new
// connections in tx's snapshot follow, read through a pacer (pace.Dial); stop tells that no
// chunk is left for another. A connection that cannot be made or join the snapshot is left out:
// the others read its share.
func startStreams(ctx context.Context, tx pgx.Tx, n int, owned, long bool, stop func() bool) <-chan dbStream {
	own := tx.Conn().PgConn()
	streams := make(chan dbStream, max(n, 1))
	// Sent first; read only once this returns, after the snapshot export below used own.
	streams <- dbStream{conn: own, close: func() {}}
	if !owned || !long || n <= 1 {
		close(streams)
		return streams
	}
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&snapshot); err != nil || !snapshotID.MatchString(snapshot) {
		close(streams)
		return streams
	}
	cfg := tx.Conn().Config().Copy()
	if pace.Of(own) == nil { // else cfg's dial paces already
		cfg.DialFunc = pace.Dial(cfg.DialFunc)
	}
	go func() {
		defer close(streams)
		for range n - 1 {
			if stop() || ctx.Err() != nil {
				return
			}
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return
			}
			closeConn := func() { c.Close(context.WithoutCancel(ctx)) }
			if _, err := c.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
				closeConn()
				return
			}
			streams <- dbStream{conn: c.PgConn(), close: closeConn}
		}
	}()
	return streams
}

var snapshotID = regexp.MustCompile(`^[0-9A-F]+(-[0-9A-F]+)+$`)

// pipelineDB streams audit.events from seq from on (up to rep.HeadSeq and beyond) through the
// hashers and calls fn with the entries of each batch, in chain order, from the
// calling goroutine. The entries are only valid during the call.
func (v *Verifier) pipelineDB(ctx context.Context, tx pgx.Tx, owned bool, rep *Report, from int64, cross bool, fn func([]entry) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n := v.DBStreams
	if n <= 0 {
		n = defaultStreams(tx.Conn().PgConn().Conn().RemoteAddr(), runtime.GOMAXPROCS(0))
	}
	if chunks := (rep.HeadSeq - from + dbChunkRows) / dbChunkRows; chunks < int64(n) {
		n = int(max(chunks, 1)) // a short trail needs no extra connection
	}
	chunks := planChunks(from, rep.HeadSeq, n)
	// Streams take the next chunk not taken: one that connects late reads less.
	var taken atomic.Int64
	take := func() int {
		if i := taken.Add(1) - 1; i < int64(len(chunks)) {
			return int(i)
		}
		return -1
	}
	// Connecting ends with the reading: a connection that is slow to come has no work left.
	connCtx, stopConnecting := context.WithCancel(ctx)
	defer stopConnecting()
	streams := startStreams(connCtx, tx, n, owned, rep.HeadSeq-from >= dbChunkRows,
		func() bool { return taken.Load() >= int64(len(chunks)) })
	perStream := dbChunkRows/dbBatchRows + 2
	work := make(chan *dbBatch, n*perStream) // room for every batch there can be

	workers := v.workers(1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			h := newHasher(cross)
			for b := range work {
				for i := range b.n {
					h.hash(&b.rows[i].ev, &b.ents[i])
				}
				b.ready <- struct{}{}
			}
		})
	}
	var readers sync.WaitGroup
	readErrs := make([]error, n)
	go func() {
		got := 0
		for st := range streams {
			s := got
			got++
			rep.Streams = got
			pool := newBatchPool(perStream)
			readers.Go(func() {
				defer st.close()
				for i := take(); i >= 0; i = take() {
					c := chunks[i]
					if readErrs[s] == nil {
						readErrs[s] = readCopy(ctx, st.conn, c.from, c.to, pool, func(b *dbBatch) error {
							work <- b // never blocks: work holds every batch there is
							c.batches <- b
							return nil
						})
						if readErrs[s] != nil {
							cancel(readErrs[s])
						}
					}
					close(c.batches)
				}
			})
		}
		readers.Wait()
		close(work)
	}()

	var err error
	for _, c := range chunks {
		for b := range c.batches {
			<-b.ready
			if err == nil {
				if err = fn(b.ents[:b.n]); err != nil {
					cancel(err)
				}
			}
			b.reset()
			b.pool <- b
		}
	}
	stopConnecting()
	wg.Wait() // work is closed: every reader is done
	if err != nil {
		return err
	}
	return firstCause(readErrs...)
}
