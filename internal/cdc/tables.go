package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// tableConf is how a table is captured (its row of audit.audited_tables) as of the WAL the
// stream has read. A change is chained as its table was configured when the change was made:
// since schema version 7 audit.audited_tables is in the publication, and its changes arrive in
// commit order between the changes they govern. Reading the table's current row instead would
// drop a change made in mode wal whose table was switched to mode trigger or disabled before the
// stream got to it, and chain a column that was excluded when the change was made.
type tableConf struct {
	Mode    string   `json:"mode"`
	PK      []string `json:"pk"`
	Exclude []string `json:"exclude"`
}

// tableConfs is every audited table's configuration by relation id. It is persisted in
// audit.chain_head.wal_config (tableConfs.persist), so that a restarted stream, which the slot
// sends the WAL again from its confirmed position, resumes with the configuration of then.
type tableConfs map[uint32]tableConf

// loadConfs returns the configuration to start a replication session with, and whether its
// changes come through the publication (fromWAL). Without them (a schema before version 7, a
// publication of the user's without audit.audited_tables) the current configuration is read at
// each relation message, as before version 7, and audit.capture_problems reports it. fresh: the
// slot was just created, so nothing before now will be sent: start from the current
// configuration, and persist it. guessed: the slot holds WAL from before and no configuration of
// then was persisted, so the current one stands in for it.
func (s *Stream) loadConfs(ctx context.Context, fresh bool) (confs tableConfs, fromWAL, guessed bool, err error) {
	var saved []byte
	var hasColumn bool
	// to_jsonb of the row: the column does not exist before schema version 7.
	err = s.pool.QueryRow(ctx, `SELECT to_jsonb(h) -> 'wal_config', to_jsonb(h) ? 'wal_config',
	                                   EXISTS (SELECT FROM pg_catalog.pg_publication_tables p WHERE p.pubname = $1
	                                            AND p.schemaname = 'audit' AND p.tablename = 'audited_tables')
	                              FROM audit.chain_head h`, s.cfg.Publication).Scan(&saved, &hasColumn, &fromWAL)
	if err != nil {
		return nil, false, false, fmt.Errorf("read capture configuration: %w", err)
	}
	fromWAL = fromWAL && hasColumn
	if fromWAL && !fresh && len(saved) > 0 && string(saved) != "null" {
		if err := json.Unmarshal(saved, &confs); err != nil {
			return nil, false, false, fmt.Errorf("audit.chain_head.wal_config: %w", err)
		}
		return confs, true, false, nil
	}
	confs = tableConfs{}
	if err := s.readConfs(ctx, 0, confs); err != nil {
		return nil, false, false, err
	}
	if fromWAL {
		if err := confs.persist(ctx, s); err != nil {
			return nil, false, false, err
		}
	}
	return confs, fromWAL, !fresh, nil
}

// readConfs reads the current configuration of relid (every table when 0) into confs.
func (s *Stream) readConfs(ctx context.Context, relid uint32, confs tableConfs) error {
	if relid != 0 {
		delete(confs, relid)
	}
	// to_jsonb of the row: mode does not exist before schema version 6 (all were trigger).
	rows, err := s.pool.Query(ctx, `SELECT a.relid, COALESCE(to_jsonb(a) ->> 'mode', 'trigger'), a.pk_columns, a.exclude_columns
	                                  FROM audit.audited_tables a WHERE $1 = 0 OR a.relid = $1::oid`, int64(relid))
	if err != nil {
		return fmt.Errorf("read audit.audited_tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint32
		var c tableConf
		if err := rows.Scan(&id, &c.Mode, &c.PK, &c.Exclude); err != nil {
			return fmt.Errorf("read audit.audited_tables: %w", err)
		}
		confs[id] = c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit.audited_tables: %w", err)
	}
	return nil
}

// persist records confs as the configuration as of what the stream has chained, as
// pgtrail_sealer (the owner of the chain head).
func (confs tableConfs) persist(ctx context.Context, s *Stream) error {
	doc, err := json.Marshal(confs)
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := actAsSealer(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE audit.chain_head SET wal_config = $1::jsonb`, string(doc)); err != nil {
		return fmt.Errorf("record the capture configuration: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("record the capture configuration: %w", err)
	}
	return nil
}

// isConfig reports whether relID is audit.audited_tables.
func (r *receiver) isConfig(relID uint32) (*pglogrepl.RelationMessage, bool) {
	rel, ok := r.relations[relID]
	return rel, ok && rel.Namespace == "audit" && rel.RelationName == "audited_tables"
}

// configChanged applies an insert, update (tuple) or delete (old) of audit.audited_tables.
func (r *receiver) configChanged(rel *pglogrepl.RelationMessage, tuple, old *pglogrepl.TupleData) error {
	row := tuple
	if row == nil {
		row = old
	}
	var relid uint32
	c := tableConf{}
	found := 0
	for i, col := range rel.Columns {
		if row == nil || i >= len(row.Columns) {
			break
		}
		v := row.Columns[i]
		if v.DataType != pglogrepl.TupleDataTypeText {
			continue // null, or an unchanged TOAST value: kept below
		}
		var err error
		switch col.Name {
		case "relid":
			var n uint64
			n, err = strconv.ParseUint(string(v.Data), 10, 32)
			relid = uint32(n)
			found++
		case "mode":
			c.Mode = string(v.Data)
		case "pk_columns":
			err = r.dec.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, v.Data, &c.PK)
		case "exclude_columns":
			err = r.dec.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, v.Data, &c.Exclude)
		}
		if err != nil {
			return fmt.Errorf("decode audit.audited_tables.%s %q: %w", col.Name, v.Data, err)
		}
	}
	if found == 0 {
		return errors.New("decode audit.audited_tables: a change without relid")
	}
	delete(r.walTables, relid)
	delete(r.trigTables, relid)
	r.rootsAt = time.Time{} // tables and partitions may have come or gone
	r.confDirty = true
	if tuple == nil {
		delete(r.confs, relid)
		return nil
	}
	// A column the WAL did not repeat (an unchanged TOAST value) is as it was.
	prev := r.confs[relid]
	for i, col := range rel.Columns {
		if i < len(tuple.Columns) && tuple.Columns[i].DataType == pglogrepl.TupleDataTypeToast {
			switch col.Name {
			case "pk_columns":
				c.PK = prev.PK
			case "exclude_columns":
				c.Exclude = prev.Exclude
			}
		}
	}
	if c.Mode == "" {
		c.Mode = "trigger"
	}
	// A switch to mode wal: changes before it in the transaction were captured by the table's
	// triggers (witness.go). Any configuration change counts while the configuration is guessed.
	if c.Mode == "wal" && (prev.Mode != "wal" || r.confsGuessed) {
		if _, ok := r.txSwitchAt[relid]; !ok {
			r.txSwitchAt[relid] = len(r.txChanges)
		}
	}
	r.confs[relid] = c
	return nil
}

// table returns the walTable of a relation in mode wal as configured now (in WAL order), or nil.
func (r *receiver) table(ctx context.Context, relID uint32) (*walTable, error) {
	return r.audited(ctx, relID, "wal", r.walTables)
}

// triggerTable returns a relation in mode trigger as configured now (in WAL order), or nil: the
// stream witnesses its changes (witness.go).
func (r *receiver) triggerTable(ctx context.Context, relID uint32) (*walTable, error) {
	return r.audited(ctx, relID, "trigger", r.trigTables)
}

// audited returns a relation audited in mode as configured now, or nil, remembered in cache.
func (r *receiver) audited(ctx context.Context, relID uint32, mode string, cache map[uint32]*walTable) (*walTable, error) {
	if t, ok := cache[relID]; ok {
		return t, nil
	}
	rel, known := r.relations[relID]
	c, audited := r.confs[relID]
	if !known || !audited || c.Mode != mode || rel.Namespace == "audit" {
		cache[relID] = nil
		return nil, nil
	}
	t := &walTable{rel: rel, pk: c.PK, exclude: c.Exclude}
	for _, col := range rel.Columns {
		t.names = append(t.names, col.Name)
		t.types, t.typmods = append(t.types, col.DataType), append(t.typmods, col.TypeModifier)
	}
	// The name as the relation message gives it (as the table was called then), quoted as
	// audit.table_name quotes it.
	if err := r.pool.QueryRow(ctx, `SELECT quote_ident($1) || '.' || quote_ident($2)`, rel.Namespace, rel.RelationName).Scan(&t.name); err != nil {
		return nil, fmt.Errorf("name relation %s.%s: %w", rel.Namespace, rel.RelationName, err)
	}
	cache[relID] = t
	return t, nil
}

// relationChanged forgets what was derived from a relation's previous message; without the
// configuration's changes in the WAL, it reads the table's current configuration.
func (r *receiver) relationChanged(ctx context.Context, msg *pglogrepl.RelationMessage) error {
	delete(r.walTables, msg.RelationID)
	delete(r.trigTables, msg.RelationID)
	if r.confsFromWAL || msg.Namespace == "audit" {
		return nil
	}
	return r.readConfs(ctx, msg.RelationID, r.confs)
}

// configCommitted persists the configuration after a transaction that changed it, once the
// changes before it are chained (they were read under the configuration before it, and a stream
// restarted from them must find that one).
func (r *receiver) configCommitted(ctx context.Context) error {
	if !r.confDirty || !r.confsFromWAL {
		r.confDirty = false
		return nil
	}
	if err := r.chainWAL(ctx); err != nil {
		return err
	}
	if err := r.confs.persist(ctx, r.Stream); err != nil {
		return err
	}
	r.confDirty = false
	return nil
}
