package cdc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/eventcopy"
)

// WAL capture: tables in mode 'wal' have no row trigger. Their changes come through the slot with
// both row images (REPLICA IDENTITY FULL), each preceded in its transaction by a logical message
// holding the session's pgtrail.* context (audit.emit_context). The stream turns them into
// entries, chains them, and writes them to audit.events itself; they then join the archive's
// batch like entries the SQL sealer chained. See docs/design.md, "Capture".

// contextPrefix is the prefix of audit.emit_context's messages.
const contextPrefix = "pgtrail.context"

// Warnings set in an entry's details.capture_warning. verify db reports entries that carry one.
const (
	// warnNoContext: the statement trigger did not run before the change (triggers disabled).
	warnNoContext = "no context: the change was made with pgtrail's triggers disabled; who made it is unknown"
	// warnOldImage: the table's replica identity is not FULL: the before image has only the key.
	warnOldImage = "replica identity not FULL: before_state holds only the key columns"
	// warnGap: the slot was gone; changes in mode wal made meanwhile never reached the trail.
	warnGap = "the replication slot was created anew: changes to tables in mode wal between from_lsn and to_lsn are lost"
	// warnBare: not even a text image could be built (a value too large for jsonb, say).
	warnBare = "no row images: they could not be built: "
	// warnSlotMoved: the slot was moved past WAL the stream had not confirmed.
	warnSlotMoved = "the replication slot was dropped and created again, or advanced, past WAL the stream had not read: changes to tables in mode wal, the witness of trigger capture and autonomous events in between are lost"
	// warnText: the images did not convert to their column types; values are kept as text.
	warnText = "row images kept as text, a value did not convert to its type: "
)

// unknownUser is db_user (and actor_id) of a change that came without context.
const unknownUser = "(unknown)"

// sessionContext is what audit.emit_context emits, as its JSON keys.
type sessionContext struct {
	XID             string  `json:"xid"`
	ActorID         *string `json:"actor_id"`
	ActorIP         *string `json:"actor_ip"`
	UserAgent       *string `json:"user_agent"`
	RequestID       *string `json:"request_id"`
	TenantID        *string `json:"tenant_id"`
	DBUser          string  `json:"db_user"`
	ApplicationName *string `json:"application_name"`
	ClientAddr      *string `json:"client_addr"`
}

// walTable is a table in mode 'wal' as the latest relation message describes it.
type walTable struct {
	rel     *pglogrepl.RelationMessage
	name    string   // resource_type: schema.table, quoted where needed
	types   []uint32 // each column's type and modifier, as the relation message gives them
	typmods []int32
	pk      []string
	exclude []string
	names   []string // the columns
	// untyped: a conversion of this table's rows overran; its images are built as text.
	untyped bool
}

// change is one row change of a walTable, or a TRUNCATE (no images).
type change struct {
	table    *walTable
	action   string    // CREATE, UPDATE, DELETE, TRUNCATE
	old, new []*string // column texts in the relation's order; nil slice: no image
	oldKey   bool      // old holds only the key (replica identity not FULL)
	ctx      *sessionContext
	// byTrigger: a capture row of the same transaction captured it (made before its table
	// switched to mode wal): the sealer chains it, not the stream.
	byTrigger bool
	// event, instead of a row change (table nil): an application event written as a logical
	// message (autonomous.go), chained in its place among the transaction's changes.
	event *autonomousEvent
}

// walTx is a committed transaction's changes to tables in mode 'wal'.
type walTx struct {
	xid     uint32
	commit  time.Time
	end     pglogrepl.LSN
	changes []change
}

// imager runs the row-images queries on a connection of its own, closed after each batch: the
// table owners' code runs there (as pgtrail_typer), and whatever it does to its session
// (settings, temporary objects) never reaches the connections the stream acts on as itself.
type imager struct {
	s    *Stream
	conn *pgx.Conn
}

func (m *imager) close() {
	if m.conn != nil {
		m.conn.Close(context.Background())
		m.conn = nil
	}
}

// query runs sql on the imager's connection (a new one after a failure) and scans its rows
// into events, terminating the backend if it overruns timeout (code in a table owner's types
// runs in it, and may catch a statement timeout).
func (m *imager) query(ctx context.Context, timeout time.Duration, sql string, args []any, events []*pgtrail.Event) error {
	if m.conn == nil {
		cfg := m.s.cfg.ConnConfig.Copy()
		cfg.RuntimeParams["search_path"] = "pg_catalog, pg_temp"
		cfg.RuntimeParams["application_name"] = "pgtrail stream (row images)"
		// Timestamps in UTC, as the WAL's texts (the replication connection's settings) and the
		// images built in Go (images.go) have them, whatever the server's default.
		cfg.RuntimeParams["TimeZone"] = "UTC"
		cfg.RuntimeParams["DateStyle"] = "ISO"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		m.conn = conn
	}
	pid := m.conn.PgConn().PID()
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(qctx, func() {
		if ctx.Err() == nil {
			m.s.pool.Exec(context.WithoutCancel(ctx), "SELECT pg_terminate_backend($1)", pid)
		}
	})
	defer stop()
	err := scanImages(qctx, m.conn, sql, args, events)
	if err != nil {
		// The session may hold whatever the failed code left: never reuse it.
		m.close()
		if qctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("row images did not finish within %s (the query's backend was terminated)", timeout)
		}
	}
	return err
}

// images fills the fields PostgreSQL derives for changes of one table (never TRUNCATE). When a
// change's images do not convert to their types (or the conversion overruns), that change's
// images are built from the column texts instead, and flagged; when even that fails (a value too
// large for jsonb), the entry keeps no images, flagged. No value stops the trail.
func (s *Stream) images(ctx context.Context, m *imager, t *walTable, changes []*change, events []*pgtrail.Event) error {
	if jsonImages(t, changes, events) {
		return nil
	}
	if !t.untyped {
		err := s.typedImages(ctx, m, t, changes, events, "", s.cfg.ImagesTimeout)
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	for k := range changes {
		one, ev := changes[k:k+1], events[k:k+1]
		var failure string
		if !t.untyped {
			err := s.typedImages(ctx, m, t, one, ev, "", s.cfg.ImagesTimeout/10)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return err
			}
			failure = err.Error()
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				failure = pgErr.Message
			} else {
				// An overrun: the table's types run code that does not finish. Its images are
				// built as text from now on (for this version of the table).
				t.untyped = true
			}
		} else {
			failure = "an earlier conversion of this table's rows did not finish"
		}
		s.log.Warn("a row image does not convert to its column types; keeping its values as text", "table", t.name, "err", failure)
		err := s.typedImages(ctx, m, t, one, ev, failure, s.cfg.ImagesTimeout)
		if err == nil || ctx.Err() != nil {
			if err != nil {
				return err
			}
			continue
		}
		s.log.Warn("a row image cannot be kept even as text; the entry keeps none", "table", t.name, "err", err)
		if err := s.bareImage(ctx, one[0], ev[0], failure+"; "+err.Error()); err != nil {
			return err
		}
	}
	return nil
}

// bareImage gives e no row images, only its flag: for a change whose images cannot be built.
func (s *Stream) bareImage(ctx context.Context, c *change, e *pgtrail.Event, failure string) error {
	e.BeforeState, e.AfterState, e.ResourceID, e.ChangedColumns = nil, nil, nil, []string{}
	return s.flag(ctx, e, warnBare+failure)
}

// flag sets e's details to {"capture_warning": warning}. PostgreSQL writes the JSON: its text is
// what audit.canonical hashes.
func (s *Stream) flag(ctx context.Context, e *pgtrail.Event, warning string) error {
	return s.pool.QueryRow(ctx, `SELECT pg_catalog.jsonb_build_object('capture_warning', $1::text)::text`, warning).Scan(&e.Details)
}

// typedImages runs audit.row_images for changes: typed, or, with failure set (why typing failed),
// from the column texts.
func (s *Stream) typedImages(ctx context.Context, m *imager, t *walTable, changes []*change, events []*pgtrail.Event, failure string, timeout time.Duration) error {
	n := len(t.rel.Columns)
	hasOld, hasNew, warn := make([]bool, len(changes)), make([]bool, len(changes)), make([]*string, len(changes))
	// Per column, the texts of every change (NULLs where there is no image: the arrays are
	// two-dimensional, so every column has every change).
	old, new := make([][]*string, n), make([][]*string, n)
	for i := 0; i < n; i++ {
		old[i], new[i] = make([]*string, len(changes)), make([]*string, len(changes))
	}
	for k, c := range changes {
		hasOld[k], hasNew[k] = c.old != nil, c.new != nil
		warn[k] = changeWarning(c, failure)
		for i := 0; i < n; i++ {
			if i < len(c.old) {
				old[i][k] = c.old[i]
			}
			if i < len(c.new) {
				new[i][k] = c.new[i]
			}
		}
	}
	// audit.row_images runs the table owner's code (domain checks, casts) as a role with no
	// rights, on the imager's connection.
	query := `SELECT * FROM audit.row_images($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	args := []any{castTypes(t), t.typmods, t.names, t.exclude, t.pk, hasOld, hasNew, warn, old, new, failure == ""}
	if err := m.query(ctx, timeout, query, args, events); err != nil {
		return fmt.Errorf("build row images of %s: %w", t.name, err)
	}
	return nil
}

// castTypes are the types audit.row_images casts t's column texts to. It names a type with no
// modifier by format_type(type, NULL), which for character and bit means a length of one (the
// cast would cut "hello" to "h"): a column of either without a length is cast to text and bit
// varying, which write the same JSON.
func castTypes(t *walTable) []uint32 {
	types := slices.Clone(t.types)
	for i, oid := range types {
		if i < len(t.typmods) && t.typmods[i] == -1 {
			switch oid {
			case 1042: // bpchar
				types[i] = 25 // text
			case 1560: // bit
				types[i] = 1562 // varbit
			}
		}
	}
	return types
}

// changeWarning is a change's details.capture_warning: made without context, with only the key
// in its old image, or (failure) with images kept as text; nil when none.
func changeWarning(c *change, failure string) *string {
	var w []string
	if c.ctx == nil {
		w = append(w, warnNoContext)
	}
	if c.oldKey {
		w = append(w, warnOldImage)
	}
	if failure != "" {
		w = append(w, warnText+failure)
	}
	if len(w) == 0 {
		return nil
	}
	joined := strings.Join(w, "; ")
	return &joined
}

// scanImages runs an images query and scans one row into each event, in order.
func scanImages(ctx context.Context, conn *pgx.Conn, query string, args []any, events []*pgtrail.Event) error {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	k := 0
	for rows.Next() {
		if k == len(events) {
			return fmt.Errorf("more rows than changes")
		}
		e := events[k]
		if err := rows.Scan(&e.BeforeState, &e.AfterState, &e.ChangedColumns, &e.ResourceID, &e.Details); err != nil {
			return err
		}
		k++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if k != len(events) {
		return fmt.Errorf("%d rows for %d changes", k, len(events))
	}
	return nil
}

// sealWAL chains the changes of txs into audit.events in one transaction, in commit order, and
// returns the entries it wrote. Transactions the chain head says are chained already (a crash
// came between that and their acknowledgement) are left out.
func (s *Stream) sealWAL(ctx context.Context, txs []walTx) ([]pgtrail.Event, error) {
	// Where a crash left off, and the server's next xid: read without a lock. Only this stream
	// moves wal_lsn (one stream per slot), so it cannot move before the lock below.
	var chainedLSN, xmax string
	if err := s.pool.QueryRow(ctx, `SELECT wal_lsn::text, pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text
	                                  FROM audit.chain_head`).Scan(&chainedLSN, &xmax); err != nil {
		return nil, fmt.Errorf("read chain head: %w", err)
	}
	chained, err := pglogrepl.ParseLSN(chainedLSN)
	if err != nil {
		return nil, fmt.Errorf("chain head wal_lsn %q: %w", chainedLSN, err)
	}
	next, err := strconv.ParseUint(xmax, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("snapshot xmax %q: %w", xmax, err)
	}
	for len(txs) > 0 && txs[0].end <= chained {
		txs = txs[1:]
	}
	if txs, err = s.withoutReplays(ctx, txs); err != nil {
		return nil, err
	}
	if len(txs) == 0 {
		return nil, nil
	}
	last := txs[len(txs)-1].end

	// The entries are built before the head is locked: the table owners' code runs in the
	// building, and must never hold up the other writers of the chain.
	start := time.Now()
	m := &imager{s: s}
	events, err := s.entries(ctx, m, txs, next)
	m.close()
	if err != nil {
		return nil, err
	}
	built := time.Now()

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var head int64
	var headHash []byte
	var lockedLSN string
	if err := tx.QueryRow(ctx, `SELECT seq, entry_hash, wal_lsn::text FROM audit.chain_head FOR UPDATE`).Scan(&head, &headHash, &lockedLSN); err != nil {
		return nil, fmt.Errorf("lock chain head: %w", err)
	}
	if lockedLSN != chainedLSN {
		return nil, fmt.Errorf("the chain head's wal_lsn moved from %s to %s: another stream chains this database's WAL", chainedLSN, lockedLSN)
	}
	if err := appendEntries(ctx, tx, head, headHash, events, last.String()); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	s.log.Debug("sealed from the WAL", "entries", len(events), "build", built.Sub(start).Round(time.Millisecond),
		"append", time.Since(built).Round(time.Millisecond))
	return events, nil
}

// withoutReplays leaves out the autonomous events of txs already chained, or twice in txs: an
// autonomous event's signed message can be read out of the WAL (a backup, the WAL archive, a
// replication role) and emitted again by any session, outside any transaction, and a
// transaction's xid cannot tell it from the original. Its event_id (random, signed) can: the
// original is chained first (one chainer at a time, each batch committed before the next), and
// found through the index on (action_type, occurred_at), both signed too.
func (s *Stream) withoutReplays(ctx context.Context, txs []walTx) ([]walTx, error) {
	var actions, ids []string
	var at []time.Time
	for _, tx := range txs {
		if a := tx.autonomous(); a != nil {
			actions, ids, at = append(actions, a.ActionType), append(ids, a.EventID), append(at, a.OccurredAt.UTC().Truncate(time.Microsecond))
		}
	}
	if len(ids) == 0 {
		return txs, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT e.event_id::text FROM unnest($1::text[], $2::timestamptz[], $3::uuid[]) AS u(action_type, occurred_at, event_id)
	                                  JOIN audit.events e ON e.action_type = u.action_type AND e.occurred_at = u.occurred_at AND e.event_id = u.event_id`,
		actions, at, ids)
	if err != nil {
		return nil, fmt.Errorf("look for replayed autonomous events: %w", err)
	}
	seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look for replayed autonomous events: %w", err)
	}
	chained := make(map[string]bool, len(seen))
	for _, id := range seen {
		chained[id] = true
	}
	kept := txs[:0:0]
	for _, tx := range txs {
		if a := tx.autonomous(); a != nil {
			if chained[a.EventID] {
				s.log.Warn("ignored an autonomous event message emitted again (replayed): its event is chained already",
					"lsn", tx.end, "event_id", a.EventID, "action_type", a.ActionType)
				continue
			}
			chained[a.EventID] = true
		}
		kept = append(kept, tx)
	}
	return kept, nil
}

// autonomous is the event of a transaction that is an autonomous event's message, nil otherwise.
func (tx *walTx) autonomous() *autonomousEvent {
	if tx.xid != 0 || len(tx.changes) != 1 || tx.changes[0].event == nil {
		return nil
	}
	return tx.changes[0].event
}

// appendEntries chains events after the head (head, headHash, locked by tx) and appends them
// to audit.events as pgtrail_sealer, moving the head; walLSN, when not "", is the end of the
// last WAL transaction they chain.
func appendEntries(ctx context.Context, tx pgx.Tx, head int64, headHash []byte, events []pgtrail.Event, walLSN string) error {
	prev := headHash
	var buf bytes.Buffer
	var scratch []byte
	for i := range events {
		e := &events[i]
		e.Seq, e.PrevHash = head+int64(i)+1, prev
		var sum [32]byte
		sum, scratch = e.Hash(scratch)
		e.EntryHash = append([]byte(nil), sum[:]...)
		prev = e.EntryHash
		eventcopy.WriteRow(&buf, e)
	}
	if err := actAsSealer(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT audit.create_partitions()
	                            WHERE to_regclass('audit.events_' || to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) IS NULL`); err != nil {
		return fmt.Errorf("create partitions: %w", err)
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, &buf, eventcopy.Statement); err != nil {
		return fmt.Errorf("append to audit.events: %w", err)
	}
	tail := events[len(events)-1]
	if _, err := tx.Exec(ctx, `UPDATE audit.chain_head SET seq = $1, entry_hash = $2, sealed_at = now(),
	                             wal_lsn = COALESCE(NULLIF($3, '')::pg_lsn, wal_lsn)`,
		tail.Seq, tail.EntryHash, walLSN); err != nil {
		return fmt.Errorf("move chain head: %w", err)
	}
	return nil
}

// actAsSealer makes the rest of tx act as pgtrail_sealer, which alone writes the trail and its
// head (the stream's role must be a member, or a superuser), and commit synchronously: what the
// stream writes there is acknowledged to PostgreSQL only once durable.
func actAsSealer(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE pgtrail_sealer; SET LOCAL synchronous_commit = on`); err != nil {
		return fmt.Errorf("act as pgtrail_sealer (grant it to the stream's role): %w", err)
	}
	return nil
}

// recordGap chains a CAPTURE_GAP entry when the slot is created anew while tables are in mode
// wal, or after a stream chained from the WAL before (the head's wal_lsn is set): changes of
// those tables, and autonomous events, between the last one chained and the new slot's
// consistent point at reached no slot, and are lost.
func (s *Stream) recordGap(ctx context.Context, at string) error {
	var tables []string
	var from string
	var since time.Time
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(array_agg(a.table_name ORDER BY a.table_name) FILTER (WHERE a.table_name IS NOT NULL), '{}'), h.wal_lsn::text, h.sealed_at
	                               FROM audit.chain_head h LEFT JOIN audit.audited_tables a ON a.mode = 'wal'
	                              GROUP BY h.wal_lsn, h.sealed_at`).Scan(&tables, &from, &since)
	if err != nil {
		return fmt.Errorf("read capture state: %w", err)
	}
	if len(tables) == 0 && from == "0/0" {
		return nil // no table in mode wal, nothing ever chained from the WAL: nothing was lost
	}
	// Another stream's slot (a second archive's) read that WAL or still holds it: nothing was
	// lost, and this stream takes what it chained from the table.
	var covered bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('audit.stream_slots') IS NOT NULL`).Scan(&covered); err != nil {
		return fmt.Errorf("check the schema: %w", err)
	}
	if covered {
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit.stream_slots t JOIN pg_catalog.pg_replication_slots r ON r.slot_name = t.slot
		                                  WHERE t.slot <> $1 AND r.database = current_database() AND r.plugin = 'pgoutput' AND NOT r.temporary
		                                    AND r.restart_lsn IS NOT NULL AND r.wal_status IS DISTINCT FROM 'lost')`, s.cfg.Slot).Scan(&covered); err != nil {
			return fmt.Errorf("read the stream's slots: %w", err)
		}
		if covered {
			s.log.Info("new replication slot; another stream's slot read the WAL before it", "slot", s.cfg.Slot)
			return nil
		}
	}
	s.log.Error("CAPTURE GAP: the replication slot was created anew: changes to tables in mode wal and autonomous events since the last one chained are lost",
		"slot", s.cfg.Slot, "to_lsn", at, "tables", tables)
	return s.recordFlagged(ctx, "replication slot", s.cfg.Slot, map[string]any{
		"from_lsn": from, "to_lsn": at, "since": since, "tables": tables, "capture_warning": warnGap})
}

// registerSlot compares the slot's confirmed position with the one this stream last recorded
// in audit.stream_slots (schema 15), before confirming it to PostgreSQL. A slot past it was moved
// by someone else over WAL no stream read (dropped and created again, by the stream or with
// pg_create_logical_replication_slot, or advanced with pg_replication_slot_advance): changes of
// tables in mode wal, trigger capture's witness and autonomous events in between are lost, and
// a CAPTURE_GAP entry says so. It then records where the slot is, and returns that (tracked is
// false on a schema without the table). created: this session made the slot, at its consistent
// point at.
func (s *Stream) registerSlot(ctx context.Context, created bool, at string) (recorded pglogrepl.LSN, tracked bool, err error) {
	var readsEvents bool // schema 16
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('audit.stream_slots') IS NOT NULL,
	                                   EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('audit.stream_slots') AND attname = 'reads_events')`).
		Scan(&tracked, &readsEvents); err != nil {
		return 0, false, fmt.Errorf("check the schema: %w", err)
	}
	if !tracked {
		if created {
			return 0, false, s.recordGap(ctx, at)
		}
		return 0, false, nil
	}
	var was, now *string
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT confirmed_lsn::text FROM audit.stream_slots WHERE slot = $1),
	                                        (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1)`,
		s.cfg.Slot).Scan(&was, &now); err != nil {
		return 0, true, fmt.Errorf("read the slot's position: %w", err)
	}
	if now == nil {
		return 0, true, fmt.Errorf("slot %s has no confirmed position (is it still being created?)", s.cfg.Slot)
	}
	pos, err := pglogrepl.ParseLSN(*now)
	if err != nil {
		return 0, true, fmt.Errorf("slot position %q: %w", *now, err)
	}
	switch {
	case was == nil:
		// Never recorded: a slot this stream (or an earlier version) did not track yet.
		if created {
			if err := s.recordGap(ctx, at); err != nil {
				return 0, true, err
			}
		}
	default:
		last, err := pglogrepl.ParseLSN(*was)
		if err != nil {
			return 0, true, fmt.Errorf("recorded slot position %q: %w", *was, err)
		}
		if pos > last {
			var tables []string
			if err := s.pool.QueryRow(ctx, `SELECT COALESCE(array_agg(table_name ORDER BY table_name), '{}') FROM audit.audited_tables WHERE mode = 'wal'`).Scan(&tables); err != nil {
				return 0, true, fmt.Errorf("read tables in mode wal: %w", err)
			}
			s.log.Error("CAPTURE GAP: the replication slot is past what the stream confirmed: someone dropped and created it again, or advanced it; the WAL in between was never read",
				"slot", s.cfg.Slot, "from_lsn", last, "to_lsn", pos, "created_by_stream", created)
			if err := s.recordFlagged(ctx, "replication slot", s.cfg.Slot, map[string]any{
				"from_lsn": last.String(), "to_lsn": pos.String(), "created_by_stream": created, "tables": tables,
				"capture_warning": warnSlotMoved}); err != nil {
				return 0, true, err
			}
		}
	}
	// reads_events (schema 16): this stream takes application events from the WAL.
	register := `INSERT INTO audit.stream_slots (slot, confirmed_lsn) VALUES ($1, $2::pg_lsn)
	             ON CONFLICT (slot) DO UPDATE SET confirmed_lsn = EXCLUDED.confirmed_lsn, recorded_at = now()`
	if readsEvents {
		register = `INSERT INTO audit.stream_slots (slot, confirmed_lsn, reads_events) VALUES ($1, $2::pg_lsn, true)
		            ON CONFLICT (slot) DO UPDATE SET confirmed_lsn = EXCLUDED.confirmed_lsn, recorded_at = now(), reads_events = true`
	}
	if _, err := s.pool.Exec(ctx, register, s.cfg.Slot, pos.String()); err != nil {
		return 0, true, fmt.Errorf("record the slot's position (the stream's role must be a member of pgtrail_sealer): %w", err)
	}
	return pos, true, nil
}

// recordConfirmed records in audit.stream_slots that lsn is about to be confirmed to PostgreSQL
// (see registerSlot).
func (r *receiver) recordConfirmed(ctx context.Context, lsn pglogrepl.LSN) error {
	if !r.slotTracked || lsn <= r.slotRecorded {
		return nil
	}
	// Also while stopping (ctx ended): what is confirmed then must be recorded first all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.pool.Exec(ctx, `UPDATE audit.stream_slots SET confirmed_lsn = $2::pg_lsn, recorded_at = now()
	                                WHERE slot = $1 AND confirmed_lsn < $2::pg_lsn`, r.cfg.Slot, lsn.String()); err != nil {
		return fmt.Errorf("record the slot's confirmed position: %w", err)
	}
	r.slotRecorded = lsn
	return nil
}

// checkCapture records, once per run of the stream, a CAPTURE_GAP entry for each table in mode
// wal whose changes no longer reach the slot whole: out of the publication, replica identity not
// FULL (before images hold only the key), UNLOGGED (nothing in the WAL). Run at each session's
// start and with the slot check.
func (s *Stream) checkCapture(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT table_name, problem FROM audit.capture_problems($1)`, s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("check capture: %w", err)
	}
	type found struct{ table, problem string }
	var all []found
	for rows.Next() {
		var f found
		if err := rows.Scan(&f.table, &f.problem); err != nil {
			rows.Close()
			return fmt.Errorf("check capture: %w", err)
		}
		all = append(all, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check capture: %w", err)
	}
	for _, f := range all {
		key := f.table + "\x00" + f.problem
		if s.reported[key] {
			continue
		}
		s.log.Error("CAPTURE GAP: "+f.table+" is audited but "+f.problem, "table", f.table)
		if err := s.recordFlagged(ctx, "table", f.table, map[string]any{"problem": f.problem, "capture_warning": f.problem}); err != nil {
			return err
		}
		s.reported[key] = true
	}
	return nil
}

// recordFlagged chains a CAPTURE_GAP entry about resource, flagged by details' capture_warning
// so that verify reports it; only the stream writes such entries (audit.pending refuses the key).
func (s *Stream) recordFlagged(ctx context.Context, resourceType, resourceID string, details map[string]any) error {
	doc, err := json.Marshal(details)
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var head int64
	var headHash []byte
	var text, txid, user string
	// PostgreSQL writes the details' text: it is what audit.canonical hashes.
	err = tx.QueryRow(ctx, `SELECT h.seq, h.entry_hash, $1::jsonb::text, pg_current_xact_id()::text, session_user
	                          FROM audit.chain_head h FOR UPDATE`, string(doc)).Scan(&head, &headHash, &text, &txid, &user)
	if err != nil {
		return fmt.Errorf("lock chain head: %w", err)
	}
	id, err := strconv.ParseUint(txid, 10, 64)
	if err != nil {
		return fmt.Errorf("xid %q: %w", txid, err)
	}
	e := pgtrail.Event{EventID: newUUID(), OccurredAt: time.Now().UTC().Truncate(time.Microsecond), TxID: id,
		ActionType: "CAPTURE_GAP", ResourceType: resourceType, ResourceID: &resourceID, Outcome: "FAILURE",
		ActorID: "pgtrail stream", DBUser: user, ChangedColumns: []string{}, Details: &text}
	if err := appendEntries(ctx, tx, head, headHash, []pgtrail.Event{e}, ""); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.m.Tampering.Inc()
	if s.cfg.Observer != nil {
		s.cfg.Observer.Tampering(ctx, "CAPTURE_GAP", strconv.FormatInt(head+1, 10))
	}
	return nil
}

// entries builds the unchained entries of txs, in order. next is the server's next xid (xid8),
// from which a transaction's 32-bit xid gets its epoch when no context message gave its xid8.
func (s *Stream) entries(ctx context.Context, m *imager, txs []walTx, next uint64) ([]pgtrail.Event, error) {
	var events []pgtrail.Event
	byTable := map[*walTable][]int{}
	var ips []string
	for _, t := range txs {
		txid := uint64(next&^0xFFFFFFFF) | uint64(t.xid)
		if txid >= next && txid >= 1<<32 {
			txid -= 1 << 32
		}
		for i := range t.changes {
			c := &t.changes[i]
			var e pgtrail.Event
			if c.event != nil {
				e = c.event.entry()
				e.DBUser = unknownUser
			} else {
				e = pgtrail.Event{EventID: newUUID(), OccurredAt: t.commit.UTC().Truncate(time.Microsecond), TxID: txid,
					ActionType: c.action, ResourceType: c.table.name, Outcome: "SUCCESS", DBUser: unknownUser, ChangedColumns: []string{}}
			}
			if x := c.ctx; x != nil {
				if v, err := strconv.ParseUint(x.XID, 10, 64); err == nil {
					e.TxID = v
				}
				e.ActorIPRaw = nonEmpty(x.ActorIP) // normalized below
				e.ActorUserAgent, e.RequestID, e.TenantID = nonEmpty(x.UserAgent), nonEmpty(x.RequestID), nonEmpty(x.TenantID)
				if x.DBUser != "" {
					e.DBUser = x.DBUser
				}
				e.ApplicationName, e.ClientAddr = nonEmpty(x.ApplicationName), x.ClientAddr
				if x.ActorID != nil && *x.ActorID != "" {
					e.ActorID = *x.ActorID
				}
				if e.ActorIPRaw != nil {
					ips = append(ips, *e.ActorIPRaw)
				}
			}
			if e.ActorID == "" {
				e.ActorID = e.DBUser
			}
			if c.event != nil {
				// An application event: no images.
			} else if c.action == "TRUNCATE" {
				if c.ctx == nil {
					if err := s.flag(ctx, &e, warnNoContext); err != nil {
						return nil, fmt.Errorf("flag a truncate: %w", err)
					}
				}
			} else {
				byTable[c.table] = append(byTable[c.table], len(events))
			}
			events = append(events, e)
		}
	}
	// Row images, one statement per table.
	for t, idx := range byTable {
		changes := make([]*change, 0, len(idx))
		evs := make([]*pgtrail.Event, 0, len(idx))
		k := 0
		for _, tx := range txs {
			for i := range tx.changes {
				c := &tx.changes[i]
				if c.table == t && c.event == nil && c.action != "TRUNCATE" {
					changes = append(changes, c)
					evs = append(evs, &events[idx[k]])
					k++
				}
			}
		}
		if err := s.images(ctx, m, t, changes, evs); err != nil {
			return nil, err
		}
	}
	// pgtrail.actor_ip as audit.seal treats it: inet in PostgreSQL's text form when it parses,
	// else kept as given in actor_ip_raw.
	if len(ips) > 0 {
		norm := map[string]*string{}
		rows, err := s.pool.Query(ctx, `SELECT v, pg_catalog.format('%s', audit.try_inet(v)) FROM pg_catalog.unnest($1::text[]) AS v WHERE audit.try_inet(v) IS NOT NULL`, ips)
		if err != nil {
			return nil, fmt.Errorf("read actor addresses: %w", err)
		}
		for rows.Next() {
			var v, ip string
			if err := rows.Scan(&v, &ip); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read actor addresses: %w", err)
			}
			norm[v] = &ip
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read actor addresses: %w", err)
		}
		for i := range events {
			e := &events[i]
			if e.ActorIPRaw != nil {
				if ip, ok := norm[*e.ActorIPRaw]; ok {
					e.ActorIP, e.ActorIPRaw = ip, nil
				}
			}
		}
	}
	return events, nil
}

// decodeContext reads a context message of the transaction xid: "<json>\n<hex MAC>" (see
// audit.emit_context). Any session can emit messages with this prefix, so a message whose MAC
// does not check with key, that is another transaction's, or that does not parse, gives no
// context: nil, never an error. The transaction's changes then keep the context before it, or
// none (and are flagged).
func decodeContext(content []byte, key []byte, xid uint32) *sessionContext {
	body := signedBody(content, key)
	if body == nil {
		return nil
	}
	var c sessionContext
	if err := json.Unmarshal(body, &c); err != nil {
		return nil
	}
	if !sameXID(c.XID, xid) {
		return nil
	}
	return &c
}

// contextKey reads the key that authenticates context messages (audit.context_key).
func (s *Stream) contextKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.pool.QueryRow(ctx, `SELECT key FROM audit.context_key WHERE to_regclass('audit.context_key') IS NOT NULL`).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // schema before version 6: no WAL capture
	}
	if err != nil {
		return nil, fmt.Errorf("read audit.context_key (the stream's role must be a member of pgtrail_sealer): %w", err)
	}
	return key, nil
}

// tupleTexts returns a tuple's column texts; unchanged TOAST values are taken from old (the
// before image, complete under REPLICA IDENTITY FULL).
func tupleTexts(t *pglogrepl.TupleData, old []*string) []*string {
	if t == nil {
		return nil
	}
	out := make([]*string, len(t.Columns))
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			s := string(c.Data)
			out[i] = &s
		case pglogrepl.TupleDataTypeToast:
			if i < len(old) {
				out[i] = old[i]
			}
		}
	}
	return out
}

func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

// newUUID returns a random version 4 UUID, as gen_random_uuid() would.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
