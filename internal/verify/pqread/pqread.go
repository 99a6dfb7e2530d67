// Package pqread decodes the archive's Parquet files fast for verification: page by page into
// events whose strings alias the pages, no allocation per value. archive.DecodeParquet is the
// slow path and the oracle its tests compare against (and what a file of another layout is read
// with).
package pqread

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// The leaf columns of an archive file, in the order archive.EncodeParquet writes them.
const (
	colSeq = iota
	colEventID
	colOccurredAt
	colTxID
	colActionType
	colResourceType
	colResourceID
	colOutcome
	colActorID
	colActorIP
	colActorIPRaw
	colUserAgent
	colRequestID
	colTenantID
	colDBUser
	colAppName
	colClientAddr
	colChangedColumns
	colBeforeState
	colAfterState
	colDetails
	colPrevHash
	colEntryHash
	numColumns
)

// archiveSchema is the schema archive.EncodeParquet writes, read from a file it encodes, so that
// the fast decoder below notices when the layout changes and leaves such files to
// archive.DecodeParquet.
var archiveSchema = sync.OnceValue(func() string {
	e := pgtrail.Event{Seq: 1, PrevHash: make([]byte, sha256.Size), EntryHash: make([]byte, sha256.Size)}
	data, err := archive.EncodeParquet([]pgtrail.Event{e})
	if err != nil {
		panic(fmt.Sprintf("verify: encode a sample archive file: %v", err))
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		panic(fmt.Sprintf("verify: open a sample archive file: %v", err))
	}
	return f.Schema().String()
})

// Row is one archived event. The event's strings alias the pages of the row group being
// decoded; they are valid until the decoder moves on.
type Row struct {
	Event    pgtrail.Event
	opt      [11]string        // what the event's nullable fields point to
	Prev     [sha256.Size]byte // room for prev_hash decoded from PrevHex
	PrevHex  []byte            // prev_hash as archived (hex); nil when Event.PrevHash is set
	EntryHex []byte            // entry_hash as archived (hex); nil when Event.EntryHash is set
	colsFrom int32             // the row's changed_columns in Decoder.cols
	colsTo   int32
}

// BlockRows is how many rows are assembled at a time: few enough that the rows stay in the
// CPU's cache while each column fills them in (assembling a whole row group, column after
// column, streams megabytes through memory 23 times).
const BlockRows = 128

// Decoder decodes archive files page by page into events whose strings alias the pages:
// no allocation per value, which makes it several times faster than archive.DecodeParquet's
// row-by-row reflection. Each column's pages are read as the rows reach them, and returned to
// parquet-go's buffer pool once the rows that alias them are hashed: a worker holds about one
// page per column, not a whole row group. One per worker; not safe for concurrent use.
type Decoder struct {
	rows [BlockRows]Row
	cols []string
	curs [numColumns]colCursor
	// held are the pages the cursors moved past while filling the current block: the block's
	// rows may still alias them.
	held []parquet.Page
}

// Decode calls fn with the rows of the file in data, a block at a time, in file order. The rows
// are only valid during the call. A malformed file may make the Parquet library (or the page
// accessors) panic: that is returned as an error like any other decoding failure; a panic in fn
// is not caught.
func (d *Decoder) Decode(data []byte, fn func([]Row) error) error {
	var f *parquet.File
	err := catch(func() (err error) {
		f, err = parquet.OpenFile(bytes.NewReader(data), int64(len(data)),
			parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("decode parquet: %w", err)
	}
	if f.Schema().String() != archiveSchema() {
		return d.decodeSlow(data, fn)
	}
	defer d.release()
	for _, rg := range f.RowGroups() {
		if err := catch(func() error { return d.open(rg) }); err != nil {
			return fmt.Errorf("decode parquet: %w", err)
		}
		for left := rg.NumRows(); left > 0; {
			rows := d.rows[:min(left, BlockRows)]
			left -= int64(len(rows))
			if err := catch(func() error { return d.block(rows) }); err != nil {
				return fmt.Errorf("decode parquet: %w", err)
			}
			if err := fn(rows); err != nil {
				return err
			}
			d.releaseHeld()
		}
		if err := catch(d.end); err != nil {
			return fmt.Errorf("decode parquet: %w", err)
		}
		d.release()
	}
	return nil
}

// end checks that every column of the row group is used up.
func (d *Decoder) end() error {
	for c := range d.curs {
		more, err := d.curs[c].more()
		if err != nil {
			return fmt.Errorf("column %d: %w", c, err)
		}
		if more {
			return fmt.Errorf("column %d has more values than the row group has rows", c)
		}
	}
	return nil
}

// catch returns f's error, or the panic f raised as one.
func catch(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed file: %v", r)
		}
	}()
	return f()
}

// decodeSlow decodes a file of another layout with archive.DecodeParquet.
func (d *Decoder) decodeSlow(data []byte, fn func([]Row) error) error {
	events, err := archive.DecodeParquet(data)
	if err != nil {
		return err
	}
	rows := make([]Row, len(events))
	for i := range events {
		rows[i].Event = events[i]
	}
	return fn(rows)
}

// releaseHeld returns the pages the last block moved past to parquet-go's pool.
func (d *Decoder) releaseHeld() {
	for _, p := range d.held {
		parquet.Release(p)
	}
	clear(d.held)
	d.held = d.held[:0]
}

// release returns every page to the pool and closes the column readers.
func (d *Decoder) release() {
	d.releaseHeld()
	for c := range d.curs {
		d.curs[c].close()
	}
}

// open sets a cursor at the start of each column of rg.
func (d *Decoder) open(rg parquet.RowGroup) error {
	chunks := rg.ColumnChunks()
	if len(chunks) != numColumns {
		return fmt.Errorf("%d columns, want %d", len(chunks), numColumns)
	}
	for c, chunk := range chunks {
		d.curs[c] = colCursor{c: c, pages: chunk.Pages(), held: &d.held}
	}
	return nil
}

// block fills rows with the next rows of the row group, column after column.
func (d *Decoder) block(rows []Row) error {
	d.cols = d.cols[:0]
	for c := range d.curs {
		if err := d.curs[c].fillBlock(rows, &d.cols); err != nil {
			return fmt.Errorf("column %d: %w", c, err)
		}
	}
	for i := range rows {
		r := &rows[i]
		r.Event.ChangedColumns = d.cols[r.colsFrom:r.colsTo:r.colsTo]
	}
	return nil
}

// pageValues gives access to the values of one page, plain or dictionary-encoded.
type pageValues struct {
	idx   []int32 // dictionary indexes, when the page is dictionary-encoded
	ints  []int64
	data  []byte
	offs  []uint32
	count int // values in the page (not counting nulls)
}

func newPageValues(p parquet.Page, kind parquet.Kind) pageValues {
	var pv pageValues
	vals := p.Data()
	if dict := p.Dictionary(); dict != nil {
		pv.idx = vals.Int32()
		pv.count = len(pv.idx)
		vals = dict.Page().Data()
	}
	switch kind {
	case parquet.Int64:
		pv.ints = vals.Int64()
		if pv.idx == nil {
			pv.count = len(pv.ints)
		}
	default:
		pv.data, pv.offs = vals.ByteArray()
		if pv.idx == nil {
			pv.count = max(len(pv.offs)-1, 0)
		}
	}
	return pv
}

func (pv *pageValues) int64(k int) int64 {
	if pv.idx != nil {
		return pv.ints[pv.idx[k]]
	}
	return pv.ints[k]
}

func (pv *pageValues) bytes(k int) []byte {
	if pv.idx != nil {
		i := pv.idx[k]
		return pv.data[pv.offs[i]:pv.offs[i+1]]
	}
	return pv.data[pv.offs[k]:pv.offs[k+1]]
}

// colCursor walks one column of a row group, row by row, across its pages.
type colCursor struct {
	c     int
	pages parquet.Pages   // nil once used up or closed
	page  parquet.Page    // the page being read, nil before the first
	held  *[]parquet.Page // where pages go once moved past (Decoder.held)
	err   error           // why the pages ended early
	pv    pageValues
	defs  []byte // definition levels (optional and list columns)
	reps  []byte // repetition levels (the list column)
	j     int    // next level (or, in a required column, value) in the page
	k     int    // next value in the page
	n     int    // levels (or values) in the page
}

// next loads the next page, if any. The page it leaves stays valid until the decoder releases
// the held pages, after the block has been hashed.
func (cur *colCursor) next() bool {
	if cur.page != nil {
		*cur.held = append(*cur.held, cur.page)
		cur.page = nil
	}
	cur.n, cur.j, cur.k = 0, 0, 0
	if cur.pages == nil {
		return false
	}
	page, err := cur.pages.ReadPage()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			cur.err = err
		}
		cur.pages.Close()
		cur.pages = nil
		return false
	}
	cur.page = page
	kind := parquet.ByteArray
	if cur.c == colSeq || cur.c == colOccurredAt || cur.c == colTxID {
		kind = parquet.Int64
	}
	cur.pv = newPageValues(page, kind)
	cur.defs, cur.reps = page.DefinitionLevels(), page.RepetitionLevels()
	cur.n = cur.pv.count
	if cur.defs != nil {
		cur.n = len(cur.defs)
	}
	if cur.c == colChangedColumns && len(cur.reps) != len(cur.defs) {
		cur.err = errors.New("a list page whose repetition and definition levels differ in number")
		cur.n = 0
		return false
	}
	return true
}

// ended is the error for a column that ran out of rows.
func (cur *colCursor) ended() error {
	if cur.err != nil {
		return cur.err
	}
	return errors.New("fewer rows than the row group has")
}

// more tells whether the column has values left.
func (cur *colCursor) more() (bool, error) {
	for cur.j >= cur.n {
		if !cur.next() {
			return false, cur.err
		}
	}
	return true, nil
}

// close releases the current page and closes the column's reader.
func (cur *colCursor) close() {
	if cur.page != nil {
		parquet.Release(cur.page)
		cur.page = nil
	}
	if cur.pages != nil {
		cur.pages.Close()
		cur.pages = nil
	}
	cur.pv, cur.defs, cur.reps = pageValues{}, nil, nil
	cur.n, cur.j, cur.k = 0, 0, 0
}

// value returns the next value of the page, checking that there is one.
func (cur *colCursor) value() ([]byte, error) {
	if cur.k >= cur.pv.count {
		return nil, errors.New("fewer values than the levels say")
	}
	cur.k++
	return cur.pv.bytes(cur.k - 1), nil
}

// fillBlock sets this column's field of every row in rows. Plain string and integer columns are
// filled a run of rows at a time (the hot path: most columns, every row); the others row by row.
func (cur *colCursor) fillBlock(rows []Row, cols *[]string) error {
	switch cur.c {
	case colSeq, colOccurredAt, colTxID, colEventID, colActionType, colResourceType, colOutcome, colActorID, colDBUser:
	case colChangedColumns, colPrevHash, colEntryHash:
		for i := range rows {
			if err := cur.fill(&rows[i], cols); err != nil {
				return err
			}
		}
		return nil
	default:
		return cur.optionalBlock(rows)
	}
	for i := 0; i < len(rows); {
		for cur.j >= cur.n {
			if !cur.next() {
				return cur.ended()
			}
		}
		run := rows[i:min(len(rows), i+cur.n-cur.j)]
		pv, j := &cur.pv, cur.j
		switch cur.c {
		case colSeq:
			for k := range run {
				run[k].Event.Seq = pv.int64(j + k)
			}
		case colOccurredAt:
			for k := range run {
				run[k].Event.OccurredAt = time.UnixMicro(pv.int64(j + k))
			}
		case colTxID:
			for k := range run {
				run[k].Event.TxID = uint64(pv.int64(j + k))
			}
		case colEventID:
			for k := range run {
				run[k].Event.EventID = str(pv.bytes(j + k))
			}
		case colActionType:
			for k := range run {
				run[k].Event.ActionType = str(pv.bytes(j + k))
			}
		case colResourceType:
			for k := range run {
				run[k].Event.ResourceType = str(pv.bytes(j + k))
			}
		case colOutcome:
			for k := range run {
				run[k].Event.Outcome = str(pv.bytes(j + k))
			}
		case colActorID:
			for k := range run {
				run[k].Event.ActorID = str(pv.bytes(j + k))
			}
		case colDBUser:
			for k := range run {
				run[k].Event.DBUser = str(pv.bytes(j + k))
			}
		}
		cur.j += len(run)
		i += len(run)
	}
	return nil
}

// optionalBlock fills an optional column into rows, a run of rows at a time.
func (cur *colCursor) optionalBlock(rows []Row) error {
	slot := optionalSlots[cur.c]
	for i := 0; i < len(rows); {
		for cur.j >= cur.n {
			if !cur.next() {
				return cur.ended()
			}
		}
		if cur.defs == nil {
			return errors.New("an optional column without definition levels")
		}
		run := rows[i:min(len(rows), i+cur.n-cur.j)]
		defs := cur.defs[cur.j : cur.j+len(run)]
		for k := range run {
			r := &run[k]
			field := optionalField(&r.Event, cur.c)
			if defs[k] == 0 {
				*field = nil
				continue
			}
			if cur.k >= cur.pv.count {
				return errors.New("fewer values than the levels say")
			}
			r.opt[slot] = str(cur.pv.bytes(cur.k))
			cur.k++
			*field = &r.opt[slot]
		}
		cur.j += len(run)
		i += len(run)
	}
	return nil
}

// optionalField returns the event's field of optional column c.
func optionalField(e *pgtrail.Event, c int) **string {
	switch c {
	case colResourceID:
		return &e.ResourceID
	case colActorIP:
		return &e.ActorIP
	case colActorIPRaw:
		return &e.ActorIPRaw
	case colUserAgent:
		return &e.ActorUserAgent
	case colRequestID:
		return &e.RequestID
	case colTenantID:
		return &e.TenantID
	case colAppName:
		return &e.ApplicationName
	case colClientAddr:
		return &e.ClientAddr
	case colBeforeState:
		return &e.BeforeState
	case colAfterState:
		return &e.AfterState
	default:
		return &e.Details
	}
}

// fill sets the field of r of one of the columns filled row by row (prev_hash, entry_hash,
// changed_columns) from the next row, and moves past it.
func (cur *colCursor) fill(r *Row, cols *[]string) error {
	for cur.j >= cur.n {
		if !cur.next() {
			return cur.ended()
		}
	}
	switch cur.c {
	case colPrevHash:
		// Left in hex: the hasher decodes it, or finds it is the hash it computed last.
		r.PrevHex, r.Event.PrevHash = cur.pv.bytes(cur.j), nil
	case colEntryHash:
		// Left in hex: the hasher compares it with the hash it computes (hashHex).
		r.EntryHex, r.Event.EntryHash = cur.pv.bytes(cur.j), nil
	case colChangedColumns:
		return cur.list(r, cols)
	default:
		return fmt.Errorf("column %d is not filled row by row", cur.c)
	}
	cur.j++
	return nil
}

// optionalSlots maps an optional column to its slot in Row.opt.
var optionalSlots = [numColumns]int{colResourceID: 0, colActorIP: 1, colActorIPRaw: 2, colUserAgent: 3,
	colRequestID: 4, colTenantID: 5, colAppName: 6, colClientAddr: 7, colBeforeState: 8, colAfterState: 9,
	colDetails: 10}

// list reads changed_columns (a required list of required strings) of the next row: repetition
// level 0 starts the row, definition level 0 is an empty list, 1 an element.
func (cur *colCursor) list(r *Row, cols *[]string) error {
	if cur.reps[cur.j] != 0 {
		return errors.New("a list does not start at a row")
	}
	r.colsFrom = int32(len(*cols))
	for first := true; ; first = false {
		if cur.j >= cur.n && !cur.next() {
			break
		}
		if !first && cur.reps[cur.j] == 0 {
			break
		}
		def := cur.defs[cur.j]
		cur.j++
		if def == 0 {
			continue
		}
		v, err := cur.value()
		if err != nil {
			return err
		}
		*cols = append(*cols, str(v))
	}
	r.colsTo = int32(len(*cols))
	return nil
}

// str returns b as a string without copying: the row's strings alias the pages, which do not
// change while the rows are in use.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
