package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// statusReport is what "pgtrail status" shows.
type statusReport struct {
	SchemaVersion    int64           `json:"schema_version"`
	Tables           []auditedTable  `json:"audited_tables"`
	HeadSeq          int64           `json:"head_seq"`
	HeadHash         string          `json:"head_hash"`
	LastSealedAt     time.Time       `json:"last_sealed_at"`
	Pending          int64           `json:"pending"`
	OldestPendingAge *float64        `json:"oldest_pending_age_seconds"`
	Partitions       []partitionInfo `json:"partitions"`
}

type auditedTable struct {
	Name           string    `json:"name"`
	ExcludeColumns []string  `json:"exclude_columns"`
	EnabledAt      time.Time `json:"enabled_at"`
	EnabledBy      string    `json:"enabled_by"`
	TriggerEnabled bool      `json:"trigger_enabled"`
}

type partitionInfo struct {
	Name        string `json:"name"`
	Bounds      string `json:"bounds"`
	RowEstimate int64  `json:"row_estimate"`
}

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "status [--json]")
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	st, err := readStatus(ctx, conn)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(e, st)
	return nil
}

func readStatus(ctx context.Context, conn *pgx.Conn) (*statusReport, error) {
	st := &statusReport{}
	var installed bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('audit.chain_head') IS NOT NULL`).Scan(&installed); err != nil {
		return nil, notRun(fmt.Errorf("read status: %w", err))
	}
	if !installed {
		return nil, fmt.Errorf("pgtrail is not installed in this database (run: pgtrail migrate up)")
	}
	_ = conn.QueryRow(ctx, `SELECT COALESCE((SELECT version FROM pgtrail_schema_migrations LIMIT 1), 0)`).Scan(&st.SchemaVersion)
	var hash []byte
	err := conn.QueryRow(ctx, `
SELECT h.seq, h.entry_hash, h.sealed_at, (SELECT count(*) FROM audit.pending),
       (SELECT extract(epoch FROM clock_timestamp() - min(occurred_at))::float8 FROM audit.pending)
  FROM audit.chain_head h`).Scan(&st.HeadSeq, &hash, &st.LastSealedAt, &st.Pending, &st.OldestPendingAge)
	if err != nil {
		return nil, permissionOrFail("read chain head", err)
	}
	st.HeadHash = fmt.Sprintf("%x", hash)
	rows, err := conn.Query(ctx, `
SELECT t.table_name, t.exclude_columns, t.enabled_at, t.enabled_by,
       COALESCE((SELECT tg.tgenabled <> 'D' FROM pg_trigger tg WHERE tg.tgrelid = t.relid AND tg.tgname = 'pgtrail_capture'), false)
  FROM audit.audited_tables t ORDER BY t.table_name`)
	if err != nil {
		return nil, permissionOrFail("read audited tables", err)
	}
	st.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditedTable, error) {
		var t auditedTable
		err := r.Scan(&t.Name, &t.ExcludeColumns, &t.EnabledAt, &t.EnabledBy, &t.TriggerEnabled)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audited tables: %w", err)
	}
	rows, err = conn.Query(ctx, `
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), greatest(c.reltuples, 0)::bigint
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'audit.events'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	st.Partitions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (partitionInfo, error) {
		var p partitionInfo
		err := r.Scan(&p.Name, &p.Bounds, &p.RowEstimate)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	return st, nil
}

func permissionOrFail(what string, err error) error {
	if isPermission(err) {
		return notRun(fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func printStatus(e *env, st *statusReport) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "schema version\t%d\n", st.SchemaVersion)
	fmt.Fprintf(w, "chain head\tseq %d, %s\n", st.HeadSeq, st.HeadHash)
	fmt.Fprintf(w, "last sealed\t%s\n", st.LastSealedAt.Format(time.RFC3339))
	pending := fmt.Sprintf("%d", st.Pending)
	if st.OldestPendingAge != nil {
		pending += fmt.Sprintf(" (oldest %.1fs ago)", *st.OldestPendingAge)
	}
	fmt.Fprintf(w, "pending (unsealed)\t%s\n", pending)
	w.Flush()
	fmt.Fprintf(e.stdout, "\naudited tables (%d):\n", len(st.Tables))
	for _, t := range st.Tables {
		state := "capturing"
		if !t.TriggerEnabled {
			state = "TRIGGER DISABLED OR MISSING"
		}
		excl := ""
		if len(t.ExcludeColumns) > 0 {
			excl = " excluding " + strings.Join(t.ExcludeColumns, ", ")
		}
		fmt.Fprintf(e.stdout, "  %s: %s%s (since %s by %s)\n", t.Name, state, excl, t.EnabledAt.Format(time.RFC3339), t.EnabledBy)
	}
	fmt.Fprintf(e.stdout, "\npartitions (%d):\n", len(st.Partitions))
	for _, p := range st.Partitions {
		fmt.Fprintf(e.stdout, "  %s  %s  ~%d rows\n", p.Name, p.Bounds, p.RowEstimate)
	}
}
