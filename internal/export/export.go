// Package export writes compliance reports: the audit events a search filter selects, from the
// database or the archive, as a CSV or Parquet file, and records the export itself in the audit
// trail (who asked, with which filter, how many rows, and the file's SHA-256) in the same
// transaction that read the rows. The file appears only once that record is committed.
package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/search"
)

// Format is a report's file format.
type Format string

// The formats Export writes.
const (
	CSV     Format = "csv"
	Parquet Format = "parquet"
)

// ActionType is the action_type of the event that records an export.
const ActionType = "EXPORT"

// ErrExists is returned when the report file already exists: a report is never overwritten.
var ErrExists = errors.New("report file already exists")

// Request describes one export.
type Request struct {
	// Filter selects the events, as for search (Limit 0 exports all).
	Filter search.Filter
	// Format is CSV or Parquet.
	Format Format
	// Path is the report file to create; it must not exist.
	Path string
	// Sink, when set, is the archive to read instead of the database; Source names it.
	Sink   archive.Sink
	Source string
	// RequestedBy is the person the export is for: the EXPORT event's actor_id (else the
	// database user).
	RequestedBy string
	// Reason is recorded with the export (a ticket, a legal request).
	Reason string
}

// Validate names the first bad field.
func (r *Request) Validate() error {
	switch {
	case r.Format != CSV && r.Format != Parquet:
		return fmt.Errorf("export: format %q: want csv or parquet", r.Format)
	case r.Path == "":
		return errors.New("export: a report path is needed")
	case r.Sink != nil && r.Source == "":
		return errors.New("export: Source must name the archive")
	}
	return r.Filter.Normalize()
}

// Result is what an export wrote and recorded.
type Result struct {
	Path   string `json:"path"`
	Format Format `json:"format"`
	Rows   int64  `json:"rows"`
	// SHA256 is the hex SHA-256 of the file, also the EXPORT event's resource_id.
	SHA256 string `json:"sha256"`
	// Source is "database" or the archive URL.
	Source string `json:"source"`
	// Masked: read from audit.events_masked.
	Masked bool `json:"masked"`
	// EventID is the EXPORT event's event_id.
	EventID string `json:"event_id"`
	// Unverified are the archive's data files left out because no digest covers them.
	Unverified []string `json:"unverified_files,omitempty"`
}

// Export writes the report and records it. The rows are read in the transaction that records
// the EXPORT event (REPEATABLE READ, so the count is of exactly what was written); the file is
// written under a temporary name and linked into place only after the commit, so that no report
// exists without its record. The event carries the requester's tenant (when the filter names one
// tenant), so the tenant's own trail shows the export.
func Export(ctx context.Context, conn *pgx.Conn, req Request) (*Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(req.Path); err == nil {
		return nil, fmt.Errorf("export %s: %w", req.Path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("export: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tenant := ""
	if t := req.Filter.Tenant; t != nil && *t != search.NoTenant {
		tenant = *t
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('pgtrail.actor_id', $1, true), set_config('pgtrail.tenant_id', $2, true)`,
		req.RequestedBy, tenant); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}

	dir := filepath.Dir(req.Path)
	tmp, err := os.CreateTemp(dir, ".pgtrail-export-*")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	committed := false
	defer func() {
		tmp.Close()
		if !committed {
			os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	w, err := newWriter(req.Format, io.MultiWriter(tmp, sum))
	if err != nil {
		return nil, err
	}
	res := &Result{Path: req.Path, Format: req.Format, Source: "database"}
	write := func(e *pgtrail.Event) error {
		res.Rows++
		return w.write(e)
	}
	if req.Sink != nil {
		res.Source = req.Source
		res.Unverified, err = search.EachArchive(ctx, req.Sink, req.Filter, write)
	} else {
		var rel search.Relation
		rel, err = search.EachDB(ctx, tx, req.Filter, write)
		res.Masked = rel.Masked
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := w.close(); err != nil {
		return nil, fmt.Errorf("export: write %s: %w", req.Path, err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("export: write %s: %w", req.Path, err)
	}
	res.SHA256 = hex.EncodeToString(sum.Sum(nil))

	details := map[string]any{
		"filter": req.Filter, "rows": res.Rows, "format": req.Format, "source": res.Source,
		"masked": res.Masked, "file": filepath.Base(req.Path), "sha256": res.SHA256,
		"requested_by": req.RequestedBy, "reason": req.Reason,
	}
	if len(res.Unverified) > 0 {
		details["unverified_files_left_out"] = len(res.Unverified)
	}
	if err := tx.QueryRow(ctx, `SELECT audit.log_event($1, 'audit.events', $2, 'SUCCESS', $3)::text`,
		ActionType, res.SHA256, details).Scan(&res.EventID); err != nil {
		return nil, fmt.Errorf("export: record the export: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("export: record the export: %w", err)
	}
	committed = true
	// Recorded: from here on the report may exist. Link, so that a file created meanwhile wins.
	if err := os.Link(tmp.Name(), req.Path); err != nil {
		os.Remove(tmp.Name())
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("export %s: %w (the export was recorded as event %s; the report is not written)", req.Path, ErrExists, res.EventID)
		}
		return nil, fmt.Errorf("export: %w (the export was recorded as event %s)", err, res.EventID)
	}
	os.Remove(tmp.Name())
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return res, nil
}

// writer is one format's encoder.
type writer struct {
	write func(*pgtrail.Event) error
	close func() error
}

func newWriter(f Format, w io.Writer) (*writer, error) {
	switch f {
	case CSV:
		cw := search.NewCSVWriter(w)
		cw.EscapeFormulas = true
		return &writer{write: cw.Write, close: cw.Flush}, nil
	case Parquet:
		pw := parquet.NewGenericWriter[row](w, parquet.Compression(&parquet.Zstd))
		buf := make([]row, 0, 1024)
		flush := func() error {
			if len(buf) == 0 {
				return nil
			}
			_, err := pw.Write(buf)
			buf = buf[:0]
			return err
		}
		return &writer{
			write: func(e *pgtrail.Event) error {
				buf = append(buf, newRow(e))
				if len(buf) == cap(buf) {
					return flush()
				}
				return nil
			},
			close: func() error {
				if err := flush(); err != nil {
					return err
				}
				return pw.Close()
			},
		}, nil
	}
	return nil, fmt.Errorf("export: format %q: want csv or parquet", f)
}

// row is an exported event in Parquet: the archive's columns and types, so the Athena and
// `pgtrail query` queries work on reports too, except that the hashes may be null (a masked
// export has none).
type row struct {
	Seq             int64     `parquet:"seq"`
	EventID         string    `parquet:"event_id"`
	OccurredAt      time.Time `parquet:"occurred_at,timestamp(microsecond:utc)"`
	TxID            int64     `parquet:"txid"`
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
	PrevHash        *string   `parquet:"prev_hash,optional"`
	EntryHash       *string   `parquet:"entry_hash,optional"`
}

func newRow(e *pgtrail.Event) row {
	cols := e.ChangedColumns
	if cols == nil {
		cols = []string{}
	}
	r := row{
		Seq: e.Seq, EventID: e.EventID, OccurredAt: e.OccurredAt.UTC(), TxID: int64(e.TxID),
		ActionType: e.ActionType, ResourceType: e.ResourceType, ResourceID: e.ResourceID,
		Outcome: e.Outcome, ActorID: e.ActorID, ActorIP: e.ActorIP, ActorIPRaw: e.ActorIPRaw,
		ActorUserAgent: e.ActorUserAgent, RequestID: e.RequestID, TenantID: e.TenantID,
		DBUser: e.DBUser, ApplicationName: e.ApplicationName, ClientAddr: e.ClientAddr,
		ChangedColumns: cols, BeforeState: e.BeforeState, AfterState: e.AfterState, Details: e.Details,
	}
	if len(e.EntryHash) > 0 {
		p, h := hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.EntryHash)
		r.PrevHash, r.EntryHash = &p, &h
	}
	return r
}

// ReadParquet decodes a Parquet report written by Export (for tests and tools).
func ReadParquet(data []byte) ([]pgtrail.Event, error) {
	rows, err := parquet.Read[row](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	out := make([]pgtrail.Event, len(rows))
	for i, r := range rows {
		out[i] = pgtrail.Event{
			Seq: r.Seq, EventID: r.EventID, OccurredAt: r.OccurredAt.UTC(), TxID: uint64(r.TxID),
			ActionType: r.ActionType, ResourceType: r.ResourceType, ResourceID: r.ResourceID,
			Outcome: r.Outcome, ActorID: r.ActorID, ActorIP: r.ActorIP, ActorIPRaw: r.ActorIPRaw,
			ActorUserAgent: r.ActorUserAgent, RequestID: r.RequestID, TenantID: r.TenantID,
			DBUser: r.DBUser, ApplicationName: r.ApplicationName, ClientAddr: r.ClientAddr,
			ChangedColumns: r.ChangedColumns, BeforeState: r.BeforeState, AfterState: r.AfterState,
			Details: r.Details,
		}
		if r.EntryHash != nil && r.PrevHash != nil {
			out[i].PrevHash, _ = hex.DecodeString(*r.PrevHash)
			out[i].EntryHash, _ = hex.DecodeString(*r.EntryHash)
		}
	}
	return out, nil
}
