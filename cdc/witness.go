package cdc

import (
	"context"
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
// and a capture row is matched with the change it captured.
func (r *receiver) pendingInserted(ctx context.Context, rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData) error {
	var row pendingRow
	var err error
	for i, col := range rel.Columns {
		if tuple == nil || i >= len(tuple.Columns) || tuple.Columns[i].DataType != pglogrepl.TupleDataTypeText {
			continue
		}
		v := string(tuple.Columns[i].Data)
		switch col.Name {
		case "id":
			row.id, err = strconv.ParseInt(v, 10, 64)
		case "txid":
			row.txid, err = strconv.ParseUint(v, 10, 64)
		case "occurred_at":
			row.at, err = parseTimestamptz(v)
		case "action_type":
			row.action = v
		case "resource_type":
			row.table = v
		}
		if err != nil {
			// Not the stream's to refuse: the entry goes unwitnessed, said once per row.
			r.log.Warn("an insert into audit.pending the stream cannot read; not witnessed", "column", col.Name, "value", v, "err", err)
			return nil
		}
	}
	r.txCaptured = append(r.txCaptured, row)
	if !captureActions[row.action] {
		return nil
	}
	// A row trigger on a partitioned table runs as its partition's; a TRUNCATE trigger is each
	// table's own (a partition's capture row is that partition truncated, the table's is the
	// table's).
	root := row.table
	if row.action != "TRUNCATE" {
		var err error
		if root, err = r.rootName(ctx, row.table); err != nil {
			return err
		}
	}
	for i := range r.txChanges {
		if c := &r.txChanges[i]; !c.byTrigger && c.action == row.action && c.table.name == root {
			c.byTrigger = true
			return nil
		}
	}
	for i := range r.txWitnessed {
		if w := &r.txWitnessed[i]; !w.done && w.action == row.action && w.table.name == root {
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

// rootName is the name of the table a capture row's table is a partition of (a row trigger on
// a partitioned table runs as its partition's), or name itself.
func (r *receiver) rootName(ctx context.Context, name string) (string, error) {
	if root, ok := r.roots[name]; ok {
		return root, nil
	}
	var root string
	err := r.pool.QueryRow(ctx, `SELECT COALESCE(audit.table_name(pg_partition_root(to_regclass($1))), $1)`, name).Scan(&root)
	if err != nil {
		return "", fmt.Errorf("name the table of %s: %w", name, err)
	}
	r.roots[name] = root
	return root, nil
}

// witnessCommitted, at a commit: changes to tables in mode wal that a trigger captured are left
// to the sealer; changes to tables in mode trigger that nothing captured are recorded, before
// anything of the transaction is acknowledged; the transaction's captured entries are
// remembered.
func (r *receiver) witnessCommitted(ctx context.Context, msg *pglogrepl.CommitMessage) error {
	kept := r.txChanges[:0]
	for _, c := range r.txChanges {
		if !c.byTrigger {
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

// checkOutstanding looks for the captured entries unseen for WitnessAge: still in
// audit.pending (the sealer is behind), sealed (this stream read past them, or before a
// restart), or neither: deleted before sealing, recorded.
func (r *receiver) checkOutstanding(ctx context.Context) error {
	cutoff := time.Now().Add(-r.cfg.WitnessAge)
	var keys []string
	for k, c := range r.outstanding {
		if c.seen.Before(cutoff) {
			keys = append(keys, k)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := r.lookFor(ctx, keys[:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

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
	// One pass over audit.pending (it has no index); audit.events by its action index.
	rows, err := r.pool.Query(ctx, `
		WITH g AS (SELECT * FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) WITH ORDINALITY AS g(action, tbl, at, txid, n)),
		     p AS (SELECT r.grp, count(*) AS n FROM unnest($1::bigint[], $2::int[]) AS r(id, grp)
		            WHERE r.id IN (SELECT p.id FROM audit.pending p WHERE p.id = ANY ($1::bigint[])) GROUP BY r.grp)
		SELECT g.n - 1, COALESCE((SELECT p.n FROM p WHERE p.grp = g.n - 1), 0),
		       (SELECT count(*) FROM audit.events e WHERE e.action_type = g.action AND e.occurred_at = g.at
		           AND e.txid = g.txid::text::xid8 AND e.resource_type = g.tbl)
		  FROM g`, ids, groups, actions, tables, ats, txids)
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
