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
	// Slots are the logical replication slots of this database (WAL capture and the stream).
	Slots []slotInfo `json:"slots"`
}

type slotInfo struct {
	Name         string  `json:"name"`
	Active       bool    `json:"active"`
	ConfirmedLSN *string `json:"confirmed_lsn"`
	// RetainedWAL is the WAL the slot keeps on the server; CaptureLag is the WAL written since
	// the position the stream confirmed (chained and archived).
	RetainedWAL int64 `json:"retained_wal_bytes"`
	CaptureLag  int64 `json:"capture_lag_bytes"`
	// FailoverSafe: the slot is synchronized to standbys (PostgreSQL 17+ failover slots). Before
	// 17 a logical slot does not survive a failover: changes in mode wal not chained yet would be
	// lost with it.
	FailoverSafe bool `json:"failover_safe"`
}

type auditedTable struct {
	Name           string    `json:"name"`
	ExcludeColumns []string  `json:"exclude_columns"`
	EnabledAt      time.Time `json:"enabled_at"`
	EnabledBy      string    `json:"enabled_by"`
	TriggerEnabled bool      `json:"trigger_enabled"`
	// Mode is the capture mode: wal or trigger.
	Mode string `json:"mode"`
	// Problem says why capture is not working, "" when it is.
	Problem string `json:"problem,omitempty"`
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
SELECT t.table_name, t.exclude_columns, t.enabled_at, t.enabled_by, t.mode,
       COALESCE((SELECT tg.tgenabled <> 'D' FROM pg_trigger tg WHERE tg.tgrelid = t.relid
                   AND tg.tgname = CASE t.mode WHEN 'wal' THEN 'pgtrail_context' ELSE 'pgtrail_capture' END), false),
       (SELECT string_agg(p.problem, '; ' ORDER BY p.problem) FROM audit.capture_problems() p WHERE p.table_name = t.table_name)
  FROM audit.audited_tables t ORDER BY t.table_name`)
	if err != nil {
		return nil, permissionOrFail("read audited tables", err)
	}
	st.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditedTable, error) {
		var t auditedTable
		var problem *string
		err := r.Scan(&t.Name, &t.ExcludeColumns, &t.EnabledAt, &t.EnabledBy, &t.Mode, &t.TriggerEnabled, &problem)
		switch {
		case problem != nil && *problem != "":
			t.Problem = shout(*problem)
		case !t.TriggerEnabled && t.Mode == "wal":
			t.Problem = "CONTEXT TRIGGER DISABLED OR MISSING: changes are captured without who made them"
		case !t.TriggerEnabled:
			t.Problem = "TRIGGER DISABLED OR MISSING"
		}
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
	rows, err = conn.Query(ctx, `
SELECT slot_name, active, confirmed_flush_lsn::text,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint,
       COALESCE((to_jsonb(s) ->> 'failover')::boolean, false)
  FROM pg_replication_slots s WHERE database = current_database() AND slot_type = 'logical' ORDER BY slot_name`)
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	st.Slots, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (slotInfo, error) {
		var s slotInfo
		err := r.Scan(&s.Name, &s.Active, &s.ConfirmedLSN, &s.RetainedWAL, &s.CaptureLag, &s.FailoverSafe)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	return st, nil
}

// shout upper-cases what comes before each problem's colon, for status to show it as loudly as
// the other broken states ("not in the publication: ..." → "NOT IN THE PUBLICATION: ...").
func shout(problems string) string {
	parts := strings.Split(problems, "; ")
	for i, p := range parts {
		if head, rest, ok := strings.Cut(p, ":"); ok {
			parts[i] = strings.ToUpper(head) + ":" + rest
		}
	}
	return strings.Join(parts, "; ")
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
		state := "capturing (mode " + t.Mode + ")"
		if t.Problem != "" {
			state = t.Problem + " (mode " + t.Mode + ")"
		}
		excl := ""
		if len(t.ExcludeColumns) > 0 {
			excl = " excluding " + strings.Join(t.ExcludeColumns, ", ")
		}
		fmt.Fprintf(e.stdout, "  %s: %s%s (since %s by %s)\n", t.Name, state, excl, t.EnabledAt.Format(time.RFC3339), t.EnabledBy)
	}
	fmt.Fprintf(e.stdout, "\nreplication slots (%d):\n", len(st.Slots))
	for _, s := range st.Slots {
		state := "inactive (no pgtrail stream reading it)"
		if s.Active {
			state = "active"
		}
		failover := "not failover-safe"
		if s.FailoverSafe {
			failover = "failover-safe"
		}
		confirmed := "none"
		if s.ConfirmedLSN != nil {
			confirmed = *s.ConfirmedLSN
		}
		fmt.Fprintf(e.stdout, "  %s: %s, confirmed %s, capture lag %d bytes, retains %d bytes of WAL, %s\n",
			s.Name, state, confirmed, s.CaptureLag, s.RetainedWAL, failover)
	}
	fmt.Fprintf(e.stdout, "\npartitions (%d):\n", len(st.Partitions))
	for _, p := range st.Partitions {
		fmt.Fprintf(e.stdout, "  %s  %s  ~%d rows\n", p.Name, p.Bounds, p.RowEstimate)
	}
}
