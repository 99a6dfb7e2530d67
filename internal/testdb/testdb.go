// Package testdb gives tests a fresh database with pgtrail's schema installed, on the shared
// throwaway cluster of package testenv.
package testdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/pgschema"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// New returns a superuser pool and URL for a fresh database with the audit schema migrated up.
func New(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := testenv.Postgres(t)
	return Migrated(t, url), url
}

// Migrated migrates the database at url up to the audit schema and returns a superuser pool on
// it: for a database of a dedicated cluster (testenv.StartPostgres).
func Migrated(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	m, err := pgschema.NewMigrator(ctx, cfg, false)
	if err != nil {
		t.Fatalf("migrator: %v", err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	m.Close()
	return Pool(t, url)
}

// Pool opens a pool on url, closed at cleanup.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pool %s: %v", url, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Execer is a connection, pool or transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Exec runs sql and fails the test on error.
func Exec(t testing.TB, db Execer, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// Slot creates the pgoutput replication slot name (what WAL capture needs) and drops it when the
// test ends, retrying a moment: the walsender of a stream that read it may outlive the stream's
// connection.
func Slot(t testing.TB, db Execer, name string) {
	t.Helper()
	Exec(t, db, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := db.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, name); err == nil {
				return
			}
		}
	})
}

// Seal chains everything pending and returns how many entries it sealed. The sealing horizon is
// cluster-wide, so a transaction of another test's database can hold entries back for a moment:
// Seal keeps sealing until nothing is pending, for up to 30 seconds.
func Seal(t testing.TB, db *pgxpool.Pool) int64 {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var total int64
	for {
		var n, pending int64
		if err := db.QueryRow(ctx, "SELECT audit.seal(), (SELECT count(*) FROM audit.pending)").Scan(&n, &pending); err != nil {
			t.Fatalf("seal: %v", err)
		}
		total += n
		if n == 0 && pending == 0 {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("seal: %d entries still pending after 30s: a transaction somewhere in the cluster stays open", pending)
		}
		if n == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Streamed waits until every stream reading db's WAL (an active slot of its database, or one a
// stream registered and is about to read) has confirmed the WAL written before the call: it has
// then chained what was committed before, application events written to the WAL included
// (schema 16), for up to 30 seconds.
func Streamed(t testing.TB, db *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	var lsn string
	// The insert position: commits here are asynchronous, and the write position can be
	// behind them.
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var behind int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()
			AND (active OR slot_name IN (SELECT slot FROM audit.stream_slots))
			AND (confirmed_flush_lsn IS NULL OR confirmed_flush_lsn < $1::pg_lsn)`, lsn).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams had not confirmed WAL %s after 30s", behind, lsn)
		}
	}
}

// NewTLS returns a superuser pool and URL (sslmode=require) for a database with the audit schema
// on a cluster of its own that speaks TLS, and fails unless the pool's connections use it.
func NewTLS(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	c := testenv.StartPostgres(t, nil)
	c.EnableTLS(t)
	url := strings.Replace(c.URL("postgres"), "sslmode=disable", "sslmode=require", 1)
	db := Migrated(t, url)
	var ssl bool
	err := db.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
	if err != nil || !ssl {
		t.Fatalf("connection not over TLS (ssl %v, %v)", ssl, err)
	}
	return db, url
}
