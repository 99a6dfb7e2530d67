package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/pace"
)

// copyQuery streams audit.events from seq %d on, in chain order, in COPY's binary format: no
// per-value text formatting on the server (timestamps, bytea, uuid, integers travel as they are
// stored) and no row-scanning machinery on the client. inet must arrive in PostgreSQL's text
// form, as the canonical encoding has it: abbrev(inet) prints exactly what inet's output
// function (and so format('%%s', ...) in audit.canonical) prints, at a third of format's cost
// (TestCopyQuery_InetText holds it to that). COPY takes no parameters; the only value in it is
// an integer.
const copyQuery = `COPY (SELECT seq, event_id, occurred_at, txid, action_type, resource_type, resource_id,
       outcome, actor_id, pg_catalog.abbrev(actor_ip), actor_ip_raw, actor_user_agent, request_id,
       tenant_id, db_user, application_name, pg_catalog.abbrev(client_addr), changed_columns,
       before_state::text, after_state::text, details::text, prev_hash, entry_hash
  FROM audit.events WHERE %s ORDER BY seq, occurred_at) TO STDOUT (FORMAT binary)`

// CopyQuery returns the COPY statement DB reads audit.events with, from seq from on: the baseline
// that database verification is measured against (read through pgconn's CopyTo).
func CopyQuery(from int64) string { return copyRange(from, -1) }

// copyRange returns the COPY of seq from to to, or from on when to < 0.
func copyRange(from, to int64) string {
	if to < 0 {
		return fmt.Sprintf(copyQuery, fmt.Sprintf("seq >= %d", from))
	}
	return fmt.Sprintf(copyQuery, fmt.Sprintf("seq BETWEEN %d AND %d", from, to))
}

const copyFields = 23

// copyHeader starts COPY's binary format (followed by flags and a header extension length).
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00")

// pgEpochMicros is 2000-01-01 00:00 UTC, PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpochMicros = 946684800000000

// Batch sizes: rows per batch, and the bytes of row data a batch holds before it is handed on.
const (
	dbBatchRows  = 512
	dbBatchBytes = 512 << 10
)

// dbRow is one row of audit.events decoded from COPY. The event's strings alias the batch's raw
// buffer (no copy, no allocation); they are valid until the batch is reused.
type dbRow struct {
	ev   pgtrail.Event
	opt  [11]string // what the event's nullable fields point to
	uuid [36]byte
	cols []string
}

// dbBatch is a run of consecutive rows on their way from the reader to the hashers and on to the
// in-order checks.
type dbBatch struct {
	raw   []byte // the rows' bytes, copied from the wire; never reallocated while rows alias it
	rows  []dbRow
	n     int
	ents  []entry
	ready chan struct{} // a worker has hashed the batch
	pool  chan *dbBatch // where the batch goes back once checked
}

func newDBBatch(pool chan *dbBatch) *dbBatch {
	return &dbBatch{raw: make([]byte, 0, dbBatchBytes), rows: make([]dbRow, dbBatchRows),
		ents: make([]entry, dbBatchRows), ready: make(chan struct{}, 1), pool: pool}
}

// batchPool is one stream's batches: up to cap(free) of them, each made when the reader first
// finds none free. A short trail (a nightly incremental run) then allocates the little it uses,
// and a long one does not wait for all of them (~10 MiB, about 1.5 ms here) before reading.
type batchPool struct {
	free chan *dbBatch // batches come back here once checked
	made int           // belongs to the stream's reader
}

func newBatchPool(size int) *batchPool { return &batchPool{free: make(chan *dbBatch, size)} }

// get returns a free batch, a new one while fewer than the pool's size exist, or waits for one.
func (p *batchPool) get(ctx context.Context) (*dbBatch, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	if p.made < cap(p.free) {
		p.made++
		return newDBBatch(p.free), nil
	}
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (b *dbBatch) reset() {
	b.n = 0
	b.raw = b.raw[:0]
}

// copyReader receives COPY data (pgconn calls Write once per row) and cuts it into batches.
type copyReader struct {
	ctx     context.Context
	pool    *batchPool
	send    func(*dbBatch) error
	cur     *dbBatch
	pace    *pace.Pacer // the stream's, nil if none
	header  bool
	done    bool   // the trailer was seen
	pending []byte // the start of a tuple split across writes (the server does not do that)
}

// Write consumes COPY data: whole tuples are decoded into the current batch.
func (r *copyReader) Write(p []byte) (int, error) {
	n := len(p)
	if len(r.pending) > 0 {
		r.pending = append(r.pending, p...)
		p = r.pending
	}
	if !r.header {
		size, ok, err := headerSize(p)
		if err != nil || !ok {
			r.keep(p)
			return n, err
		}
		r.header = true
		p = p[size:]
	}
	for len(p) > 0 {
		if r.done {
			return n, errors.New("read audit.events: data after the end of COPY")
		}
		size, ok := tupleSize(p)
		if !ok {
			break
		}
		if size == 2 { // field count -1: the trailer
			r.done = true
			p = p[2:]
			continue
		}
		if err := r.add(p[:size]); err != nil {
			return n, err
		}
		p = p[size:]
	}
	r.keep(p)
	if r.pace != nil {
		// Rows are streaming until the trailer; the command's completion is a short read.
		r.pace.SetCopying(!r.done)
	}
	return n, nil
}

// keep saves an incomplete tuple for the next Write.
func (r *copyReader) keep(p []byte) {
	if len(p) == 0 {
		r.pending = r.pending[:0]
		return
	}
	r.pending = append([]byte(nil), p...)
}

// add copies one tuple into the current batch and decodes it there.
func (r *copyReader) add(tuple []byte) error {
	b := r.cur
	if b != nil && (b.n == len(b.rows) || len(b.raw)+len(tuple) > cap(b.raw)) {
		if err := r.flush(); err != nil {
			return err
		}
		b = nil
	}
	if b == nil {
		var err error
		if b, err = r.pool.get(r.ctx); err != nil {
			return err
		}
		if cap(b.raw) < len(tuple) {
			b.raw = make([]byte, 0, len(tuple))
		}
		r.cur = b
	}
	start := len(b.raw)
	b.raw = append(b.raw, tuple...)
	if err := decodeTuple(b.raw[start:], &b.rows[b.n]); err != nil {
		return fmt.Errorf("read audit.events: %w", err)
	}
	b.n++
	return nil
}

// flush hands on the current batch, if it holds rows.
func (r *copyReader) flush() error {
	b := r.cur
	r.cur = nil
	if b == nil || b.n == 0 {
		return nil
	}
	return r.send(b)
}

// finish checks that the stream ended properly and hands on the last batch.
func (r *copyReader) finish() error {
	if len(r.pending) > 0 || !r.header || !r.done {
		return errors.New("read audit.events: COPY data ended early")
	}
	return r.flush()
}

func headerSize(p []byte) (int, bool, error) {
	const fixed = 11 + 4 + 4
	if len(p) < fixed {
		return 0, false, nil
	}
	if !bytes.Equal(p[:11], copyHeader) {
		return 0, false, errors.New("read audit.events: not COPY binary data")
	}
	ext := int(binary.BigEndian.Uint32(p[15:19]))
	if len(p) < fixed+ext {
		return 0, false, nil
	}
	return fixed + ext, true, nil
}

// tupleSize returns the length of the tuple p starts with, and false if p does not hold it all.
func tupleSize(p []byte) (int, bool) {
	if len(p) < 2 {
		return 0, false
	}
	fields := int16(binary.BigEndian.Uint16(p))
	if fields == -1 {
		return 2, true
	}
	off := 2
	for range fields {
		if len(p) < off+4 {
			return 0, false
		}
		l := int32(binary.BigEndian.Uint32(p[off:]))
		off += 4
		if l > 0 {
			off += int(l)
		}
	}
	if len(p) < off {
		return 0, false
	}
	return off, true
}

// fieldReader walks the fields of one tuple.
type fieldReader struct {
	p   []byte
	col int
	err error
}

// next returns the next field's bytes, nil for NULL.
func (f *fieldReader) next() []byte {
	l := int32(binary.BigEndian.Uint32(f.p))
	f.p = f.p[4:]
	f.col++
	if l < 0 {
		return nil
	}
	v := f.p[:l:l]
	f.p = f.p[l:]
	if v == nil {
		v = []byte{}
	}
	return v
}

// required returns a NOT NULL field's bytes, checking its length when size > 0.
func (f *fieldReader) required(size int) []byte {
	v := f.next()
	if f.err == nil && (v == nil || size > 0 && len(v) != size) {
		f.err = fmt.Errorf("column %d: unexpected NULL or length %d", f.col, len(v))
		return make([]byte, max(size, 0))
	}
	return v
}

// str returns b as a string without copying: b must not change while the string is in use.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (f *fieldReader) text() string { return str(f.required(0)) }

func (f *fieldReader) nullable(slot *string) *string {
	v := f.next()
	if v == nil {
		return nil
	}
	*slot = str(v)
	return slot
}

// decodeTuple decodes one tuple of copyQuery into row; the row's strings alias t.
func decodeTuple(t []byte, row *dbRow) error {
	if n := int16(binary.BigEndian.Uint16(t)); n != copyFields {
		return fmt.Errorf("tuple has %d fields, want %d", n, copyFields)
	}
	f := fieldReader{p: t[2:]}
	e := &row.ev
	o := &row.opt
	e.Seq = int64(binary.BigEndian.Uint64(f.required(8)))
	formatUUID(&row.uuid, f.required(16))
	e.EventID = str(row.uuid[:])
	e.OccurredAt = time.UnixMicro(int64(binary.BigEndian.Uint64(f.required(8))) + pgEpochMicros)
	e.TxID = binary.BigEndian.Uint64(f.required(8))
	e.ActionType = f.text()
	e.ResourceType = f.text()
	e.ResourceID = f.nullable(&o[0])
	e.Outcome = f.text()
	e.ActorID = f.text()
	e.ActorIP = f.nullable(&o[1])
	e.ActorIPRaw = f.nullable(&o[2])
	e.ActorUserAgent = f.nullable(&o[3])
	e.RequestID = f.nullable(&o[4])
	e.TenantID = f.nullable(&o[5])
	e.DBUser = f.text()
	e.ApplicationName = f.nullable(&o[6])
	e.ClientAddr = f.nullable(&o[7])
	var err error
	if row.cols, err = decodeTextArray(f.required(0), row.cols[:0]); err != nil && f.err == nil {
		f.err = fmt.Errorf("changed_columns: %w", err)
	}
	e.ChangedColumns = row.cols
	e.BeforeState = f.nullable(&o[8])
	e.AfterState = f.nullable(&o[9])
	e.Details = f.nullable(&o[10])
	e.PrevHash = f.required(0)
	e.EntryHash = f.required(0)
	if f.err != nil {
		return fmt.Errorf("seq %d: %w", e.Seq, f.err)
	}
	return nil
}

// formatUUID writes u in PostgreSQL's text form (lowercase, hyphenated).
func formatUUID(dst *[36]byte, u []byte) {
	hex.Encode(dst[0:8], u[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], u[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], u[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], u[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], u[10:16])
}

// decodeTextArray decodes a one-dimensional text[] in binary format into cols, aliasing p. Arrays
// the sealer never writes (NULL elements, several dimensions, lower bound other than 1) are
// decoded as far as possible; their entries then fail their hash check.
func decodeTextArray(p []byte, cols []string) ([]string, error) {
	if len(p) < 12 {
		return cols, errors.New("short array header")
	}
	ndim := int(binary.BigEndian.Uint32(p))
	p = p[12:]
	if ndim == 0 {
		return cols, nil
	}
	if len(p) < 8*ndim {
		return cols, errors.New("short array dimensions")
	}
	n := 1
	for d := range ndim {
		n *= int(binary.BigEndian.Uint32(p[8*d:]))
	}
	p = p[8*ndim:]
	for range n {
		if len(p) < 4 {
			return cols, errors.New("short array element")
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			cols = append(cols, "NULL")
			continue
		}
		if int(l) > len(p) {
			return cols, errors.New("short array element")
		}
		cols = append(cols, str(p[:l]))
		p = p[l:]
	}
	return cols, nil
}

// readCopy reads seq from to to (to < 0: to the end) on st into batches taken from pool: send
// is called for each full batch, from this goroutine.
func readCopy(ctx context.Context, conn *pgconn.PgConn, from, to int64, pool *batchPool, send func(*dbBatch) error) error {
	r := &copyReader{ctx: ctx, pool: pool, send: send, pace: pace.Of(conn)}
	if r.pace != nil {
		// An error ends the COPY without a trailer: the next statement's reads are not paced.
		defer func() { r.pace.SetCopying(false) }()
	}
	if _, err := conn.CopyTo(ctx, r, copyRange(from, to)); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return cause
		}
		return fmt.Errorf("read audit.events: %w", err)
	}
	return r.finish()
}
