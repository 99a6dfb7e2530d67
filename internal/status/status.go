// Package status reads what `pgtrail status` shows: the problems that keep the trail from being
// whole or current, each with the command that fixes it, and the state of capture, the chain
// head, the last verification, the replication slots and the partitions.
package status

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Report is what "pgtrail status" shows: what keeps the trail from being whole or current, and
// the state of capture, the chain, the slots and the partitions.
type Report struct {
	// Problems are what keeps the trail from being whole or current, each with what fixes it;
	// status exits 1 when there is any.
	Problems      []Problem `json:"problems"`
	SchemaVersion int64     `json:"schema_version"`
	Tables        []Table   `json:"audited_tables"`
	HeadSeq       int64     `json:"head_seq"`
	HeadHash      string    `json:"head_hash"`
	// LastSealedAt is nil while nothing has been sealed.
	LastSealedAt     *time.Time    `json:"last_sealed_at"`
	Pending          int64         `json:"pending"`
	OldestPendingAge *float64      `json:"oldest_pending_age_seconds"`
	LastVerification *Verification `json:"last_verification"`
	Partitions       []Partition   `json:"partitions"`
	// Slots are the logical replication slots of this database (WAL capture and the stream).
	Slots []Slot `json:"slots"`

	missingPartitions []string  // months (YYYY-MM) of now and next month without a partition
	otherProblems     []Problem // capture problems not of an audited table
}

// Problem is one thing wrong, and the command that fixes it.
type Problem struct {
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// Verification is the latest VERIFY event: a run of pgtrail verify.
type Verification struct {
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
	Scope   string    `json:"scope"`
	Range   string    `json:"range"`
}

type Slot struct {
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

type Table struct {
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

type Partition struct {
	Name   string `json:"name"`
	Bounds string `json:"bounds"`
	// Rows is counted for a partition of up to exactCountPages pages; for a larger one it is
	// the statistics' count of live rows (pg_stat_user_tables.n_live_tup, kept as rows are
	// inserted, but flushed by each backend only every second or so), and Estimated.
	Rows      int64 `json:"rows"`
	Estimated bool  `json:"estimated,omitempty"`
}

// exactCountPages: partitions up to 80 MiB are counted, not estimated (a few tens of ms each).
const exactCountPages = 10240

// ErrUnreachable wraps the error of Read's first query: the database answered none.
var ErrUnreachable = errors.New("database unreachable")

// Read reads the status of the database conn is connected to; Diagnose then lists its problems.
func Read(ctx context.Context, conn *pgx.Conn) (*Report, error) {
	st := &Report{}
	var installed bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('audit.chain_head') IS NOT NULL`).Scan(&installed); err != nil {
		return nil, fmt.Errorf("read status: %w", unreachable{err})
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
		return nil, readError("read chain head", err)
	}
	st.HeadHash = fmt.Sprintf("%x", hash)
	if st.HeadSeq == 0 {
		st.LastSealedAt = nil // the head's time is the installation's
	}
	var v Verification
	err = conn.QueryRow(ctx, `
SELECT v.occurred_at, v.outcome, COALESCE(v.details ->> 'scope', ''), COALESCE(v.resource_id, '') FROM (
    SELECT p.occurred_at, p.outcome, p.details, p.resource_id FROM audit.pending p WHERE p.action_type = 'VERIFY'
    UNION ALL
    SELECT e.occurred_at, e.outcome, e.details, e.resource_id FROM audit.events e WHERE e.action_type = 'VERIFY') v
 ORDER BY v.occurred_at DESC LIMIT 1`).Scan(&v.At, &v.Outcome, &v.Scope, &v.Range)
	switch {
	case err == nil:
		st.LastVerification = &v
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, readError("read the last verification", err)
	}
	err = conn.QueryRow(ctx, `
SELECT ARRAY(SELECT to_char(m, 'YYYY-MM') FROM unnest(ARRAY[now(), now() + interval '1 month']) AS m
              WHERE to_regclass('audit.events_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM')) IS NULL)`).Scan(&st.missingPartitions)
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	// What breaks capture, read once: each audited table's problems go on its row, the others
	// (audit.audited_tables out of the publication) are problems of their own.
	rows, err := conn.Query(ctx, `SELECT p.table_name, p.problem FROM audit.capture_problems() p`)
	if err != nil {
		return nil, readError("read capture problems", err)
	}
	captureProblems := map[string][]string{}
	var problemTables []string // in the function's order
	var name, problem string
	_, err = pgx.ForEachRow(rows, []any{&name, &problem}, func() error {
		if _, seen := captureProblems[name]; !seen {
			problemTables = append(problemTables, name)
		}
		captureProblems[name] = append(captureProblems[name], problem)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read capture problems: %w", err)
	}
	rows, err = conn.Query(ctx, `
SELECT t.table_name, t.exclude_columns, t.enabled_at, t.enabled_by, t.mode,
       COALESCE((SELECT tg.tgenabled <> 'D' FROM pg_trigger tg WHERE tg.tgrelid = t.relid
                   AND tg.tgname = CASE t.mode WHEN 'wal' THEN 'pgtrail_context' ELSE 'pgtrail_capture' END), false)
  FROM audit.audited_tables t ORDER BY t.table_name`)
	if err != nil {
		return nil, readError("read audited tables", err)
	}
	st.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Name, &t.ExcludeColumns, &t.EnabledAt, &t.EnabledBy, &t.Mode, &t.TriggerEnabled)
		problems := captureProblems[t.Name]
		delete(captureProblems, t.Name)
		switch {
		case len(problems) > 0:
			t.Problem = shout(strings.Join(problems, "; "))
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
	for _, name := range problemTables {
		for _, problem := range captureProblems[name] {
			st.otherProblems = append(st.otherProblems, Problem{Problem: name + ": " + problem,
				Fix: "as a superuser: ALTER PUBLICATION pgtrail ADD TABLE " + name})
		}
	}
	rows, err = conn.Query(ctx, `
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),
       COALESCE(pg_stat_get_live_tuples(c.oid), greatest(c.reltuples, 0)::bigint),
       pg_relation_size(c.oid) > $1::bigint * current_setting('block_size')::bigint
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'audit.events'::regclass ORDER BY c.relname`, exactCountPages)
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	st.Partitions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Partition, error) {
		var p Partition
		err := r.Scan(&p.Name, &p.Bounds, &p.Rows, &p.Estimated)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	for i := range st.Partitions {
		if p := &st.Partitions[i]; !p.Estimated {
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit."+pgx.Identifier{p.Name}.Sanitize()).Scan(&p.Rows); err != nil {
				return nil, fmt.Errorf("count partition %s: %w", p.Name, err)
			}
		}
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
	st.Slots, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Slot, error) {
		var s Slot
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

// Diagnose lists the problems, each with its fix, in the order an operator should take them.
func (st *Report) Diagnose(maxPending time.Duration) {
	add := func(problem, fix string) { st.Problems = append(st.Problems, Problem{problem, fix}) }
	wal := false
	for _, t := range st.Tables {
		wal = wal || t.Mode == "wal"
		if t.Problem != "" {
			add(t.Name+": "+t.Problem, "pgtrail enable "+t.Name+" (enabling again restores its capture; it keeps its settings)")
		}
	}
	st.Problems = append(st.Problems, st.otherProblems...)
	if st.OldestPendingAge != nil && *st.OldestPendingAge > maxPending.Seconds() {
		add(fmt.Sprintf("%d entries not sealed, the oldest for %s: no sealer runs", st.Pending,
			(time.Duration(*st.OldestPendingAge)*time.Second).String()),
			"run pgtrail stream (it seals and archives), or pgtrail seal")
	}
	if wal {
		slots := false
		for _, s := range st.Slots {
			slots = true
			if !s.Active {
				add(fmt.Sprintf("replication slot %s is read by no pgtrail stream: changes to tables in mode wal wait unchained, and it retains %d bytes of WAL", s.Name, s.RetainedWAL),
					"pgtrail stream --slot "+s.Name+" --archive URL --signing-key KEY (or drop the slot if no stream is meant to read it)")
			}
		}
		if !slots {
			add("no replication slot: changes to tables in mode wal are not kept for the stream",
				"pgtrail enable TABLE (creates the slot), then run pgtrail stream")
		}
	}
	for _, m := range st.missingPartitions {
		add("audit.events has no partition for "+m+": sealing into it fails unless the sealer may create it",
			"SELECT audit.create_partitions(); (as a member of pgtrail_owner)")
	}
	if v := st.LastVerification; v != nil && v.Outcome != "SUCCESS" {
		add(fmt.Sprintf("the last verification (%s, %s) did not find the trail intact", v.Scope, v.At.UTC().Format(time.RFC3339)),
			"pgtrail verify all ARCHIVE_URL --public-key KEY, and read what it names")
	}
}

// unreachable is the error of Read's first query: its text is the server's, and errors.Is
// finds ErrUnreachable in it.
type unreachable struct{ err error }

func (u unreachable) Error() string        { return u.err.Error() }
func (u unreachable) Unwrap() error        { return u.err }
func (u unreachable) Is(target error) bool { return target == ErrUnreachable }

// readError says what could not be read.
func readError(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
