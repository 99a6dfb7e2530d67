// Package pgschema holds pgtrail's database schema as versioned migrations (golang-migrate format),
// embedded in the binary, and a Migrator that applies them.
package pgschema

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrationsTable is where golang-migrate records the schema version. It is not the default
// "schema_migrations" so that it never collides with the application's own migrations.
const MigrationsTable = "pgtrail_schema_migrations"

// ErrHoldsAuditData is returned by Down when the audit trail is not empty and force is false.
var ErrHoldsAuditData = errors.New("the audit schema holds audit data; refusing to drop it without --force-destroy-audit-data")

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory exists
	}
	return sub
}

// Migrator applies pgtrail's migrations to one database.
type Migrator struct {
	db    *sql.DB
	m     *migrate.Migrate
	force bool
}

// NewMigrator connects to the database. force sets pgtrail.force_destroy_audit_data for the
// session, which the down migration requires before dropping a non-empty trail.
func NewMigrator(ctx context.Context, cfg *pgx.ConnConfig, force bool) (*Migrator, error) {
	cfg = cfg.Copy()
	if force {
		cfg.RuntimeParams["pgtrail.force_destroy_audit_data"] = "on"
	}
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open migration driver: %w", err)
	}
	src, err := iofs.New(Migrations(), ".")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	return &Migrator{db: db, m: m, force: force}, nil
}

// Close releases the connection.
func (m *Migrator) Close() error {
	srcErr, dbErr := m.m.Close()
	return errors.Join(srcErr, dbErr)
}

// Up applies every pending migration. It returns nil when the schema is already current.
func (m *Migrator) Up(ctx context.Context) error {
	return m.run(ctx, m.m.Up)
}

// Down reverts every migration, dropping the audit schema. Without force it refuses (and changes
// nothing) while the trail holds entries, returning ErrHoldsAuditData.
func (m *Migrator) Down(ctx context.Context) error {
	// golang-migrate commits each down migration on its own: checked here first, so that a
	// refusal by an older migration's down cannot leave the newer ones reverted.
	if !m.force {
		holds, err := m.holdsAuditData(ctx)
		if err != nil {
			return err
		}
		if holds {
			return ErrHoldsAuditData
		}
	}
	return m.run(ctx, m.m.Down)
}

// holdsAuditData reports whether the audit schema exists and holds entries or anchors.
func (m *Migrator) holdsAuditData(ctx context.Context) (bool, error) {
	var holds bool
	err := m.db.QueryRowContext(ctx, `SELECT CASE WHEN to_regclass('audit.events') IS NULL THEN false
	    ELSE EXISTS (SELECT FROM audit.events) OR EXISTS (SELECT FROM audit.pending)
	      OR (to_regclass('audit.chain_anchors') IS NOT NULL AND EXISTS (SELECT FROM audit.chain_anchors)) END`).Scan(&holds)
	if err != nil {
		return false, fmt.Errorf("check for audit data: %w", err)
	}
	return holds, nil
}

// To migrates up or down to version, which must be one of the embedded migrations: for upgrades
// one step at a time and for tests of an upgrade path.
func (m *Migrator) To(ctx context.Context, version uint) error {
	return m.run(ctx, func() error { return m.m.Migrate(version) })
}

// Version reports the applied schema version; 0 means none.
func (m *Migrator) Version() (version uint, dirty bool, err error) {
	version, dirty, err = m.m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	return version, dirty, err
}

// run applies migrations and, because every migration file is one transaction, clears the dirty
// flag golang-migrate leaves after a failure: the database is exactly at the previous version.
func (m *Migrator) run(ctx context.Context, step func() error) error {
	if err := m.clearDirty(); err != nil {
		return err
	}
	before, _, err := m.Version()
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { m.m.GracefulStop <- true })
	defer stop()
	err = step()
	if errors.Is(err, migrate.ErrNoChange) || err == nil {
		return nil
	}
	// Every pgtrail migration is one transaction, so the failed one changed nothing, but the ones
	// before it in this run are committed: record the version the database is really at.
	if ferr := m.settle(before); ferr != nil {
		err = errors.Join(err, ferr)
	}
	return plainError(err)
}

// settle replaces the dirty mark golang-migrate leaves after a failed migration with the version
// the database is at. golang-migrate marks the failed step's target dirty: for an up, the failed
// version itself (the database is at the one before it); for a down, the version below the one
// that failed (the database is still at that one), and for a failed down of the first migration
// the mark reads as "no version" with the dirty flag lost.
func (m *Migrator) settle(before uint) error {
	v, dirty, err := m.m.Version()
	nilVersion := errors.Is(err, migrate.ErrNilVersion)
	if err != nil && !nilVersion {
		return fmt.Errorf("read schema version after the failure: %w", err)
	}
	var at uint
	switch {
	case nilVersion && before > 0:
		at = versionAfter(0) // a down failed at the first migration
	case nilVersion || !dirty:
		return nil // the failure came before any migration ran
	case v > before:
		at = versionBefore(v)
	default:
		at = versionAfter(v)
	}
	return m.forceVersion(at)
}

// forceVersion records version as applied and clean; 0 means none.
func (m *Migrator) forceVersion(version uint) error {
	v := int(version)
	if version == 0 {
		v = database.NilVersion
	}
	if err := m.m.Force(v); err != nil {
		return fmt.Errorf("reset schema version to %d: %w", version, err)
	}
	return nil
}

// clearDirty undoes a dirty mark left by a failed run of an older pgtrail, which did not settle
// it: every migration being one transaction, the database is at the version before the dirty one.
func (m *Migrator) clearDirty() error {
	v, dirty, err := m.Version()
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if !dirty {
		return nil
	}
	return m.forceVersion(versionBefore(v))
}

// plainError unwraps golang-migrate's error, which embeds the whole migration text, down to the
// PostgreSQL error, and maps the down migration's refusal to ErrHoldsAuditData.
func plainError(err error) error {
	var dbErr database.Error
	if !errors.As(err, &dbErr) || dbErr.OrigErr == nil {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(dbErr.OrigErr, &pgErr) {
		if pgErr.Code == "55006" && strings.Contains(pgErr.Message, "holds audit data") {
			return ErrHoldsAuditData
		}
		return fmt.Errorf("migration failed: %w", pgErr)
	}
	return fmt.Errorf("migration failed: %w", dbErr.OrigErr)
}

// LatestVersion is the version of the newest embedded migration: what Up migrates to.
func LatestVersion() uint {
	vs := versions()
	return vs[len(vs)-1]
}

// versions lists the embedded migrations' versions, ascending (there are gaps: no 2).
func versions() []uint {
	entries, err := fs.ReadDir(Migrations(), ".")
	if err != nil {
		panic(err) // embedded at build time
	}
	var vs []uint
	for _, e := range entries {
		var v uint
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

// versionBefore is the embedded version below v, 0 when none.
func versionBefore(v uint) uint {
	var prev uint
	for _, x := range versions() {
		if x >= v {
			break
		}
		prev = x
	}
	return prev
}

// versionAfter is the embedded version above v (v itself when it is the newest).
func versionAfter(v uint) uint {
	for _, x := range versions() {
		if x > v {
			return x
		}
	}
	return v
}
