package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbFlags are the connection flags every database command takes.
type dbFlags struct {
	url string
}

func (d *dbFlags) register(fs *flagSet) {
	fs.StringVar(&d.url, "database-url", "", "PostgreSQL URL or DSN (default: $DATABASE_URL, else the libpq PG* variables)")
}

// pgLocation are the libpq variables that say which server or database to use: with none of
// them, nor a URL, nothing names the database.
var pgLocation = []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"}

// errNoDatabase is the answer when nothing names the database: libpq's default (a socket in
// /var/run/postgresql or /tmp) is rarely what a user meant, and its error does not say that
// the URL is missing.
var errNoDatabase = errors.New("no database given: set DATABASE_URL or --database-url (postgres://USER@HOST/DBNAME), or libpq's PGHOST and PGDATABASE")

// config resolves the connection settings: flag, then DATABASE_URL, then PG* variables (which
// pgx.ParseConfig("") reads).
func (d *dbFlags) config(e *env) (*pgx.ConnConfig, error) {
	url := d.url
	if url == "" {
		url = e.getenv("DATABASE_URL")
	}
	if url == "" && !slices.ContainsFunc(pgLocation, func(v string) bool { return e.getenv(v) != "" }) {
		return nil, notRun(errNoDatabase)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, notRun(fmt.Errorf("bad database URL: %w", err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgtrail"
	}
	return cfg, nil
}

// connect opens one connection, with its settings changed by each of with; failures are "could
// not run".
func (d *dbFlags) connect(ctx context.Context, e *env, with ...func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	cfg, err := d.config(e)
	if err != nil {
		return nil, err
	}
	for _, f := range with {
		f(cfg)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, notRun(fmt.Errorf("connect: %w", err))
	}
	return conn, nil
}

// isPermission reports whether err is PostgreSQL refusing for lack of privilege.
func isPermission(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "28000" || pgErr.Code == "28P01")
}

// newPool opens a pool of at most maxConns connections and checks that it can connect.
func newPool(ctx context.Context, cfg *pgx.ConnConfig, maxConns int32) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	poolCfg.ConnConfig = cfg.Copy()
	poolCfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}
