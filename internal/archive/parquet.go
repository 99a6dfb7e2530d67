package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pgtrail/pgtrail"
)

// parquetRow is an archived event as a Parquet row. Column names and order match audit.events;
// Columns (and so `pgtrail athena ddl`) reads the table definition from it. Changing this struct changes
// the bytes of new archive files, and so their file_sha256: keep it stable.
type parquetRow struct {
	Seq             int64     `parquet:"seq"`
	EventID         string    `parquet:"event_id"`
	OccurredAt      time.Time `parquet:"occurred_at,timestamp(microsecond:utc)"`
	TxID            int64     `parquet:"txid"` // xid8 reinterpreted; every real xid8 is below 2^63
	ActionType      string    `parquet:"action_type,dict"`
	ResourceType    string    `parquet:"resource_type,dict"`
	ResourceID      *string   `parquet:"resource_id,optional"`
	Outcome         string    `parquet:"outcome,dict"`
	ActorID         string    `parquet:"actor_id,dict"`
	ActorIP         *string   `parquet:"actor_ip,optional"`
	ActorIPRaw      *string   `parquet:"actor_ip_raw,optional"`
	ActorUserAgent  *string   `parquet:"actor_user_agent,optional"`
	RequestID       *string   `parquet:"request_id,optional"`
	TenantID        *string   `parquet:"tenant_id,optional,dict"`
	DBUser          string    `parquet:"db_user,dict"`
	ApplicationName *string   `parquet:"application_name,optional,dict"`
	ClientAddr      *string   `parquet:"client_addr,optional"`
	ChangedColumns  []string  `parquet:"changed_columns,list"`
	BeforeState     *string   `parquet:"before_state,optional"`
	AfterState      *string   `parquet:"after_state,optional"`
	Details         *string   `parquet:"details,optional"`
	PrevHash        string    `parquet:"prev_hash"`
	EntryHash       string    `parquet:"entry_hash"`
}

// EncodeParquet encodes events, in the order given, as one zstd-compressed Parquet file. The
// output depends only on the events (and this package's version), so a retry writes the same
// bytes. JSON and text columns hold the exact strings given; occurred_at keeps microseconds, as
// the chain does; changed_columns is never null (nil is stored as an empty list). PrevHash and
// EntryHash must be SHA-256 sums; they are stored as lowercase hex.
func EncodeParquet(events []pgtrail.Event) ([]byte, error) {
	rows := make([]parquetRow, len(events))
	for i := range events {
		e := &events[i]
		if len(e.PrevHash) != sha256.Size || len(e.EntryHash) != sha256.Size {
			return nil, fmt.Errorf("encode event seq %d: prev_hash and entry_hash must be %d bytes, have %d and %d",
				e.Seq, sha256.Size, len(e.PrevHash), len(e.EntryHash))
		}
		cols := e.ChangedColumns
		if cols == nil {
			cols = []string{}
		}
		rows[i] = parquetRow{
			Seq: e.Seq, EventID: e.EventID, OccurredAt: e.OccurredAt.UTC(), TxID: int64(e.TxID),
			ActionType: e.ActionType, ResourceType: e.ResourceType, ResourceID: e.ResourceID,
			Outcome: e.Outcome, ActorID: e.ActorID, ActorIP: e.ActorIP, ActorIPRaw: e.ActorIPRaw,
			ActorUserAgent: e.ActorUserAgent, RequestID: e.RequestID, TenantID: e.TenantID,
			DBUser: e.DBUser, ApplicationName: e.ApplicationName, ClientAddr: e.ClientAddr,
			ChangedColumns: cols, BeforeState: e.BeforeState, AfterState: e.AfterState,
			Details: e.Details, PrevHash: hex.EncodeToString(e.PrevHash),
			EntryHash: hex.EncodeToString(e.EntryHash),
		}
	}
	var buf bytes.Buffer
	// No min/max statistics in page headers, and no bounds of the blob columns in the footer: a
	// page header held its values' min and max whole, so a page of one 537 MB details value was
	// over the 2 GB a page's size may be, the writer refused it and the stream retried it
	// forever (found by red-teaming: any role can log such an event). Readers lose nothing they
	// use: the column index keeps truncated bounds.
	w := parquet.NewGenericWriter[parquetRow](&buf, parquet.Compression(&parquet.Zstd), parquet.DataPageStatistics(false),
		parquet.SkipPageBounds("before_state"), parquet.SkipPageBounds("after_state"), parquet.SkipPageBounds("details"))
	// The writer cuts pages between Write calls: rows go in runs of about writeChunkBytes, so
	// that no page holds more than one large value.
	for start := 0; start < len(rows); {
		end, size := start, 0
		for end < len(rows) && (end == start || size < writeChunkBytes) {
			size += rowSize(&rows[end])
			end++
		}
		if _, err := w.Write(rows[start:end]); err != nil {
			return nil, fmt.Errorf("encode parquet: %w", err)
		}
		start = end
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode parquet: %w", err)
	}
	return buf.Bytes(), nil
}

// writeChunkBytes bounds the row data of one Write to the Parquet writer (see EncodeParquet).
const writeChunkBytes = 8 << 20

// rowSize is about the bytes of a row's variable-length columns.
func rowSize(r *parquetRow) int {
	n := 256 + len(r.ActorID) + len(r.ResourceType)
	for _, p := range []*string{r.BeforeState, r.AfterState, r.Details, r.ResourceID, r.ActorUserAgent} {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}

// DecodeParquet decodes a file written by EncodeParquet into events, in file order. An empty
// changed_columns decodes as an empty, non-nil slice.
func DecodeParquet(data []byte) ([]pgtrail.Event, error) {
	rows, err := parquet.Read[parquetRow](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("decode parquet: %w", err)
	}
	events := make([]pgtrail.Event, len(rows))
	for i := range rows {
		r := &rows[i]
		prev, err := decodeHash(r.PrevHash)
		if err != nil {
			return nil, fmt.Errorf("decode parquet: seq %d: prev_hash: %w", r.Seq, err)
		}
		entry, err := decodeHash(r.EntryHash)
		if err != nil {
			return nil, fmt.Errorf("decode parquet: seq %d: entry_hash: %w", r.Seq, err)
		}
		cols := r.ChangedColumns
		if cols == nil {
			cols = []string{}
		}
		events[i] = pgtrail.Event{
			Seq: r.Seq, EventID: r.EventID, OccurredAt: r.OccurredAt.UTC(), TxID: uint64(r.TxID),
			ActionType: r.ActionType, ResourceType: r.ResourceType, ResourceID: r.ResourceID,
			Outcome: r.Outcome, ActorID: r.ActorID, ActorIP: r.ActorIP, ActorIPRaw: r.ActorIPRaw,
			ActorUserAgent: r.ActorUserAgent, RequestID: r.RequestID, TenantID: r.TenantID,
			DBUser: r.DBUser, ApplicationName: r.ApplicationName, ClientAddr: r.ClientAddr,
			ChangedColumns: cols, BeforeState: r.BeforeState, AfterState: r.AfterState,
			Details: r.Details, PrevHash: prev, EntryHash: entry,
		}
	}
	return events, nil
}

func decodeHash(s string) ([]byte, error) {
	if len(s) != 2*sha256.Size {
		return nil, fmt.Errorf("%d hex digits, want %d", len(s), 2*sha256.Size)
	}
	return hex.DecodeString(s)
}
