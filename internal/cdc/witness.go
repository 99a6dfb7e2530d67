package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgtrail/pgtrail"
)

// The WAL witnesses trigger capture too (schema version 12). A table in mode trigger is in the
// publication like one in mode wal, and the inserts into audit.pending reach the stream through
// a second publication (publication + "_pending", inserts only, a few columns). So the stream
// sees, in each transaction, an audited table's changes beside the capture rows its triggers
// wrote, and matches them: a capture row follows the changes of its statement (AFTER ROW
// triggers run at the statement's end), so the first unmatched change of its table and action is
// the one it captured.
//
//   - A change to a table in mode trigger that no capture row matches was made with its capture
//     off: its triggers disabled by a superuser who had first turned off the event triggers that
//     record that (version 10), or a partition truncated on its own. It is a CAPTURE_GAP entry.
//   - A change to a table in mode wal that a capture row matches was made before the table
//     switched to mode wal in the same transaction: the sealer chains it, the stream leaves it.
//   - Every captured entry (capture rows, audit.log_event, DDL) is remembered until its entry
//     comes through sealed. One still unseen after WitnessAge is looked for; found in neither
//     audit.pending nor audit.events, it was deleted before it was sealed (by a superuser: the
//     guards refuse everyone else), a CAPTURE_GAP entry.

// errWitnessBack ends a session that read without the publication of audit.pending, once it can.
var errWitnessBack = errors.New("the publication of audit.pending can be read again: restarting the session")

// pendingSuffix names the publication of audit.pending's inserts after the stream's publication.
const pendingSuffix = "_pending"

// captureActions are the action types a capture trigger writes.
var captureActions = map[string]bool{"CREATE": true, "UPDATE": true, "DELETE": true, "TRUNCATE": true}

// witnessed is a change to a table in mode trigger, waiting for its capture row.
type witnessed struct {
	table  *walTable
	action string
	key    string
	done   bool
}

// captured is what the stream saw of entries inserted into audit.pending with the same action,
// table, transaction and time (capture rows get their event_id only when sealed, and rows of one
// statement may share a microsecond): their rows' ids, and how many came through sealed.
type captured struct {
	action, table string
	at            time.Time
	txid          uint64
	ids           []int64
	sealed        int
	seen          time.Time
	lookAt        pglogrepl.LSN // see checkOutstanding
}

// capturedKey is what a captured entry keeps through sealing.
func capturedKey(action, table string, at time.Time, txid uint64) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d", action, table, at.UTC().Format(time.RFC3339Nano), txid)
}

// isPending reports whether relID is audit.pending.
func (r *receiver) isPending(relID uint32) (*pglogrepl.RelationMessage, bool) {
	rel, ok := r.relations[relID]
	return rel, ok && rel.Namespace == "audit" && rel.RelationName == "pending"
}

// witness notes a change to relID (its new row, or the old one of a DELETE) when relID is a
// table in mode trigger, and says whether it was.
func (r *receiver) witness(ctx context.Context, relID uint32, action string, tuple, old *pglogrepl.TupleData) (bool, error) {
	t, err := r.triggerTable(ctx, relID)
	if err != nil || t == nil {
		return false, err
	}
	row := tupleTexts(old, nil)
	if tuple != nil {
		row = tupleTexts(tuple, row)
	}
	r.txWitnessed = append(r.txWitnessed, witnessed{table: t, action: action, key: keyText(t, row)})
	return true, nil
}

// keyText is the row's key columns' texts joined by commas ("" without a row or a key).
func keyText(t *walTable, row []*string) string {
	var parts []string
	for _, k := range t.pk {
		for i, n := range t.names {
			if n == k && i < len(row) && row[i] != nil {
				parts = append(parts, *row[i])
			}
		}
	}
	return strings.Join(parts, ",")
}

// pendingInserted handles an insert into audit.pending: the entry is remembered until sealed,
// and a capture row is matched with the change it captured. Any role may insert into
// audit.pending (capture-shaped rows under its own name): nothing it writes there may stop the
// stream, and a row it forges covers no change made in mode wal (see witnessCommitted).
func (r *receiver) pendingInserted(ctx context.Context, rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData) error {
	row := pendingRow{action: tupleText(rel, tuple, "action_type"), table: tupleText(rel, tuple, "resource_type")}
	id, idErr := strconv.ParseInt(tupleText(rel, tuple, "id"), 10, 64)
	txid, txErr := strconv.ParseUint(tupleText(rel, tuple, "txid"), 10, 64)
	at, atErr := parseTimestamptz(tupleText(rel, tuple, "occurred_at"))
	if err := errors.Join(idErr, txErr, atErr); err != nil {
		// Not found again later; still matched with its change below.
		r.log.Warn("an insert into audit.pending the stream cannot read; it is not looked for once sealed", "err", err)
	} else {
		row.id, row.txid, row.at = id, txid, at
		r.txCaptured = append(r.txCaptured, row)
	}
	if !captureActions[row.action] {
		return nil
	}
	// A row trigger on a partitioned table runs as its partition's; a TRUNCATE trigger is each
	// table's own (a partition's capture row is that partition truncated, the table's is the
	// table's): it matches its own table only.
	relid, ok := r.rootOf(ctx, row.table, row.action != "TRUNCATE")
	if !ok {
		return nil
	}
	for i := range r.txChanges {
		if c := &r.txChanges[i]; !c.byTrigger && c.table != nil && c.action == row.action && c.table.rel.RelationID == relid {
			c.byTrigger = true
			return nil
		}
	}
	for i := range r.txWitnessed {
		if w := &r.txWitnessed[i]; !w.done && w.action == row.action && w.table.rel.RelationID == relid {
			w.done = true
			return nil
		}
	}
	return nil
}

// pendingRow is an insert into audit.pending in the open transaction.
type pendingRow struct {
	id            int64
	txid          uint64
	at            time.Time
	action, table string
}

// parseTimestamptz reads PostgreSQL's text of a timestamptz (DateStyle ISO, as a walsender
// writes it: "2026-12-07 17:27:32.714123+00", the offset possibly with minutes).
func parseTimestamptz(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999Z07", "2006-01-02 15:04:05.999999Z07:00", "2006-01-02 15:04:05.999999Z07:00:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a timestamptz: %q", s)
}

// rootOf returns the relation id of the audited table named name, or (viaPartition) of the
// audited table name is a partition of. Names, not ids, because that is what a capture row
// holds; read from the catalog, not from relation messages, which keep a partitioned table's old
// name after a rename. No query per name: a role inserting rows with made-up names costs one
// read of the audited tables every 5 s at most.
func (r *receiver) rootOf(ctx context.Context, name string, viaPartition bool) (uint32, bool) {
	e, ok := r.roots[name]
	if !ok && time.Since(r.rootsAt) > 5*time.Second {
		r.readRoots(ctx)
		e, ok = r.roots[name]
	}
	return e.relid, ok && (viaPartition || !e.partition)
}

// rootEntry is an audited table (partition false) or one of its partitions.
type rootEntry struct {
	relid     uint32
	partition bool
}

func (r *receiver) readRoots(ctx context.Context) {
	r.rootsAt = time.Now()
	rows, err := r.pool.Query(ctx, `SELECT audit.table_name(p.relid), a.relid, p.relid <> a.relid
		FROM audit.audited_tables a CROSS JOIN LATERAL (SELECT a.relid UNION SELECT t.relid FROM pg_partition_tree(a.relid) t) p(relid)`)
	if err != nil {
		r.log.Warn("could not read the audited tables' partitions", "err", err)
		return
	}
	roots := map[string]rootEntry{}
	for rows.Next() {
		var name string
		var e rootEntry
		if err := rows.Scan(&name, &e.relid, &e.partition); err != nil {
			r.log.Warn("could not read the audited tables' partitions", "err", err)
			rows.Close()
			return
		}
		roots[name] = e
	}
	rows.Close()
	if rows.Err() == nil {
		r.roots = roots
	}
}

// witnessCommitted, at a commit: changes to tables in mode wal that a trigger captured are left
// to the sealer; changes to tables in mode trigger that nothing captured are recorded, before
// anything of the transaction is acknowledged; the transaction's captured entries are
// remembered.
func (r *receiver) witnessCommitted(ctx context.Context, msg *pglogrepl.CommitMessage) error {
	// A capture row covers a change in mode wal only if it was made before its table switched to
	// mode wal in this transaction: a row forged into audit.pending must not hide a change.
	kept := r.txChanges[:0]
	for i, c := range r.txChanges {
		if c.table == nil { // an application event
			kept = append(kept, c)
			continue
		}
		at, switched := r.txSwitchAt[c.table.rel.RelationID]
		if !c.byTrigger || !switched || i >= at {
			c.byTrigger = false
			kept = append(kept, c)
		}
	}
	r.txChanges = kept
	now := time.Now()
	for _, p := range r.txCaptured {
		k := capturedKey(p.action, p.table, p.at, p.txid)
		c := r.outstanding[k]
		if c == nil {
			c = &captured{action: p.action, table: p.table, at: p.at, txid: p.txid, seen: now}
			r.outstanding[k] = c
		}
		c.ids = append(c.ids, p.id)
	}
	r.txCaptured = r.txCaptured[:0]
	missed := map[string][]string{} // table → "ACTION key"
	var tables []string
	for _, w := range r.txWitnessed {
		if w.done {
			continue
		}
		if _, ok := missed[w.table.name]; !ok {
			tables = append(tables, w.table.name)
		}
		missed[w.table.name] = append(missed[w.table.name], strings.TrimSpace(w.action+" "+w.key))
	}
	r.txWitnessed = r.txWitnessed[:0]
	for _, t := range tables {
		r.log.Error("CAPTURE GAP: changes to a table in mode trigger reached no capture row: its capture triggers were off",
			"table", t, "xid", r.txXID, "changes", missed[t])
		if err := r.recordFlagged(ctx, t, fmt.Sprint(r.txXID), map[string]any{
			"capture_warning": "changes made with the table's capture triggers off (seen in the WAL, no capture row)",
			"xid":             r.txXID, "committed_at": msg.CommitTime, "commit_lsn": msg.CommitLSN.String(),
			"changes": missed[t]}); err != nil {
			return err
		}
	}
	return nil
}

// sealedSeen counts e as sealed if it was a captured entry.
func (r *receiver) sealedSeen(e *pgtrail.Event) {
	k := capturedKey(e.ActionType, e.ResourceType, e.OccurredAt, e.TxID)
	if c := r.outstanding[k]; c != nil {
		if c.sealed++; c.sealed >= len(c.ids) {
			delete(r.outstanding, k)
		}
	}
}

// sealedAgain is sealedSeen for an audit.events row the stream skips (archived already: it
// comes again after a restart, as may the capture that it seals): read from the few columns
// that say which capture it was, not decoded whole.
func (r *receiver) sealedAgain(rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData) {
	if len(r.outstanding) == 0 {
		return
	}
	e := pgtrail.Event{ActionType: tupleText(rel, tuple, "action_type"), ResourceType: tupleText(rel, tuple, "resource_type")}
	e.OccurredAt, _ = parseTimestamptz(tupleText(rel, tuple, "occurred_at"))
	e.TxID, _ = strconv.ParseUint(tupleText(rel, tuple, "txid"), 10, 64)
	r.sealedSeen(&e)
}

// checkOutstanding looks for the captured entries unseen for WitnessAge: still in
// audit.pending (the sealer is behind), sealed (this stream read past them, or before a
// restart), or neither: deleted before sealing, recorded.
//
// An entry unseen for WitnessAge is looked up only once the stream has read the WAL the server
// had written by then: had it been sealed in time, the stream would have seen it. So a stream
// catching up (after a start, under a burst) does not look up the many entries whose sealing it
// has not read yet, a query per thousand that would hold up the reading; and one that stays
// behind still looks, later. At most a thousand per call: the receive loop waits for it.
func (r *receiver) checkOutstanding(ctx context.Context) error {
	cutoff := time.Now().Add(-r.cfg.WitnessAge)
	var keys []string
	for k, c := range r.outstanding {
		switch {
		case !c.seen.Before(cutoff):
		case c.lookAt == 0:
			c.lookAt = r.serverEnd
		case r.readTo >= c.lookAt && len(keys) < 1000:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	// While the sealer is far behind, the entries are still pending: looking them up would scan a
	// large audit.pending again and again for nothing. They are looked up once it has caught up.
	var pending int64
	if err := r.pool.QueryRow(ctx, `SELECT COALESCE(pg_stat_get_live_tuples('audit.pending'::regclass), 0)`).Scan(&pending); err != nil {
		return fmt.Errorf("count audit.pending: %w", err)
	}
	if pending > witnessPendingMax {
		return nil
	}
	return r.lookFor(ctx, keys)
}

// witnessPendingMax: above this many rows in audit.pending the sealer is behind, and captured
// entries not seen sealed are not looked up yet.
const witnessPendingMax = 100000

func (r *receiver) lookFor(ctx context.Context, keys []string) error {
	var ids []int64
	var groups []int32
	actions, tables, ats, txids := make([]string, len(keys)), make([]string, len(keys)), make([]time.Time, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		c := r.outstanding[k]
		actions[i], tables[i], ats[i], txids[i] = c.action, c.table, c.at, int64(c.txid)
		for _, id := range c.ids {
			ids, groups = append(ids, id), append(groups, int32(i))
		}
	}
	// One pass over audit.pending (it has no index), joined by hash with the ids (a test of each
	// row against an array of a thousand took minutes on a million pending rows); audit.events by
	// its action index.
	rows, err := r.pool.Query(ctx, `
		WITH g AS (SELECT * FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) WITH ORDINALITY AS g(action, tbl, at, txid, n)),
		     p AS MATERIALIZED (SELECT r.grp, count(*) AS n FROM audit.pending p JOIN unnest($1::bigint[], $2::int[]) AS r(id, grp) ON r.id = p.id
		            GROUP BY r.grp),
		     s AS MATERIALIZED (SELECT g.n AS grp, count(*) AS found FROM g JOIN audit.events e
		             ON e.action_type = g.action AND e.occurred_at = g.at AND e.txid = g.txid::text::xid8 AND e.resource_type = g.tbl
		            WHERE e.occurred_at BETWEEN (SELECT min(at) FROM g) AND (SELECT max(at) FROM g) GROUP BY g.n)
		SELECT g.n - 1, COALESCE(p.n, 0), COALESCE(s.found, 0)
		  FROM g LEFT JOIN p ON p.grp = g.n - 1 LEFT JOIN s ON s.grp = g.n`, ids, groups, actions, tables, ats, txids)
	if err != nil {
		return fmt.Errorf("look for captured entries: %w", err)
	}
	type gone struct {
		c *captured
		n int
	}
	var lost []gone
	for rows.Next() {
		var i, pending, sealed int
		if err := rows.Scan(&i, &pending, &sealed); err != nil {
			rows.Close()
			return fmt.Errorf("look for captured entries: %w", err)
		}
		c := r.outstanding[keys[i]]
		switch {
		case pending+sealed < len(c.ids):
			lost = append(lost, gone{c, len(c.ids) - pending - sealed})
			delete(r.outstanding, keys[i])
		case pending == 0:
			delete(r.outstanding, keys[i]) // sealed, all of them
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look for captured entries: %w", err)
	}
	for _, g := range lost {
		r.log.Error("CAPTURE GAP: entries captured into audit.pending were deleted before they were sealed",
			"entries", g.n, "action", g.c.action, "table", g.c.table, "occurred_at", g.c.at, "txid", g.c.txid)
		if err := r.recordFlagged(ctx, g.c.table, fmt.Sprint(g.c.txid), map[string]any{
			"capture_warning": "entries captured into audit.pending were deleted before they were sealed",
			"entries":         g.n, "action_type": g.c.action, "occurred_at": g.c.at, "txid": g.c.txid}); err != nil {
			return err
		}
	}
	return nil
}

// publications are those the stream reads: its own and, unless this session does without
// (witnessMissing), the one of audit.pending's inserts.
func (s *Stream) publications() []string {
	if s.witnessFrom != 0 {
		return []string{s.cfg.Publication}
	}
	return []string{s.cfg.Publication, s.cfg.Publication + pendingSuffix}
}

// witnessMissing handles a session ended because the publication of audit.pending did not exist
// at the WAL the slot decodes (WAL written before schema version 12, or before the publication
// was made again): PostgreSQL 15 reads publications as of the WAL it decodes, and would refuse
// every session until that WAL is gone. The next sessions read the stream's own publication only,
// until the WAL written now is acknowledged (receiver.tick ends the session then). It reports
// whether err was that.
func (s *Stream) witnessMissing(ctx context.Context, err error) bool {
	if err == nil || s.witnessFrom != 0 || !strings.Contains(err.Error(), fmt.Sprintf("publication %q does not exist", s.cfg.Publication+pendingSuffix)) {
		return false
	}
	var lsn string
	if qerr := s.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); qerr != nil {
		return false
	}
	at, perr := pglogrepl.ParseLSN(lsn)
	if perr != nil {
		return false
	}
	s.witnessFrom = at
	s.log.Warn("the slot holds WAL from before the publication of audit.pending existed: trigger capture is not witnessed until it is read",
		"publication", s.cfg.Publication+pendingSuffix, "until_lsn", lsn)
	return true
}
