package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotLogical is returned when the server's wal_level is not logical.
var ErrNotLogical = errors.New("wal_level is not logical: set wal_level = logical in postgresql.conf and restart PostgreSQL")

// ErrNotInstalled is returned when the database has no pgtrail schema.
var ErrNotInstalled = errors.New("pgtrail is not installed in this database (run: pgtrail migrate up)")

// prepare checks the server and creates the publication if missing. It does not create the slot:
// that happens on the replication connection (createSlot), which can export a snapshot.
func prepare(ctx context.Context, conn *pgx.Conn, publication string) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("%w (it is %s)", ErrNotLogical, walLevel)
	}
	var installed bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('audit.events') IS NOT NULL").Scan(&installed); err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if !installed {
		return ErrNotInstalled
	}
	// Updates, deletes and truncates are published too: on an INSERT-only trail they can only be
	// tampering, and the daemon reports them.
	if err := createPublication(ctx, conn, publication,
		"FOR TABLE audit.events WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)"); err != nil {
		return err
	}
	// What the WAL's witness of trigger capture reads of audit.pending (witness.go): inserts
	// only (it has no replica identity, so a publication of its deletes would refuse the
	// sealer's), a few columns (not the row images).
	return createPublication(ctx, conn, publication+pendingSuffix,
		"FOR TABLE audit.pending (id, txid, occurred_at, action_type, resource_type) WITH (publish = 'insert')")
}

// createPublication creates the publication name with definition unless it exists.
func createPublication(ctx context.Context, conn *pgx.Conn, name, definition string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_publication WHERE pubname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("check publication: %w", err)
	}
	if exists {
		return nil
	}
	_, err := conn.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{name}.Sanitize()+" "+definition)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("create publication %s: %w", name, err)
	}
	return nil
}

// errSlotElsewhere: the slot name is taken by another database of the cluster.
var errSlotElsewhere = errors.New("replication slot in use by another database")

// slotExists reports whether the replication slot exists in this database.
func slotExists(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var db string
	err := conn.QueryRow(ctx, "SELECT database FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&db)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check slot %s: %w", slot, err)
	}
	if db != conn.Config().Database {
		return false, fmt.Errorf("%w: slot %s belongs to database %s, not %s: choose another --slot", errSlotElsewhere, slot, db, conn.Config().Database)
	}
	return true, nil
}

// createSlot creates the permanent pgoutput slot and returns its consistent point: the WAL from
// which it decodes.
func createSlot(ctx context.Context, repl *pgconn.PgConn, slot string) (consistent string, err error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "NOEXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return "", fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return res.ConsistentPoint, nil
}
