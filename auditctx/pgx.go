package auditctx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BatchSender is what BeginTx begins a transaction on: a *pgx.Conn, a *pgxpool.Pool or a
// *pgxpool.Conn. Not a pgx.Tx: the batch starts with BEGIN. SendBatch reports errors through the
// BatchResults it returns, as pgx's implementations do.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ BatchSender = (*pgx.Conn)(nil)
	_ BatchSender = (*pgxpool.Pool)(nil)
	_ BatchSender = (*pgxpool.Conn)(nil)
)

// BeginTx begins a transaction on db with the Actor of ctx applied as transaction-local settings,
// sending BEGIN and the settings in one round trip. Without an Actor in ctx the settings are set
// empty, so the transaction's writes are recorded as the database user's. The caller commits or
// rolls back the returned transaction as usual; on a pool, that releases the connection.
func BeginTx(ctx context.Context, db BatchSender, opts pgx.TxOptions) (pgx.Tx, error) {
	a, _ := From(ctx)
	b := &pgx.Batch{}
	b.BeginTx(opts)
	b.Queue(setSettingsSQL, append(settingArgs(a), true)...)
	br := db.SendBatch(ctx, b)
	tx := br.Tx()
	if err := br.Close(); err != nil {
		// Ends a transaction that did begin, and hands a pool's connection back either way.
		if rerr := tx.Rollback(ctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
		return nil, fmt.Errorf("begin audited transaction: %w", err)
	}
	return tx, nil
}

// Log records e through audit.log_event in tx, so that it is recorded if and only if tx commits.
// When ctx carries an Actor, Log first applies it to tx (in the same statement), so the event and
// tx's later writes carry it; otherwise the event carries the settings tx already has. An invalid e
// returns an error wrapping ErrInvalidEvent without sending anything, and tx stays usable; a
// database error aborts tx, like any failed statement.
func Log(ctx context.Context, tx pgx.Tx, e Event) error {
	sql, args, err := logStatement(ctx, e)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("log %s event: %w", e.Action, err)
	}
	return nil
}

// resetTimeout bounds the reset of a released connection; past it the connection is destroyed.
const resetTimeout = 5 * time.Second

// ConfigurePool installs hooks on cfg that apply the Actor of the acquiring ctx to each connection
// the pool hands out, at session level, and reset it when the connection is released. Hooks
// already in cfg (PrepareConn or the deprecated BeforeAcquire, AfterRelease, BeforeClose) keep
// running, before these. Call it before pgxpool.NewWithConfig.
//
// A connection is acquired by every Pool method that runs SQL (Exec, Query, QueryRow, SendBatch,
// Begin, BeginTx, CopyFrom) and by Acquire and AcquireFunc, with the ctx passed to that call. The
// Actor stays on the connection until it is released: statements run on an acquired *pgxpool.Conn
// or pgx.Tx carry the acquiring ctx's Actor, whatever ctx they pass. Released connections are reset
// before another caller can acquire them, and destroyed if the reset fails, so one request's Actor
// never reaches another's writes. If the settings cannot be applied at acquire, the connection is
// destroyed and the call fails: no write runs without the context it was given. Connections
// acquired without an Actor cost nothing extra; with one, a round trip at acquire and one at
// release. A hijacked connection (pgxpool.Conn.Hijack) keeps the Actor it was acquired with.
//
// Don't use these hooks behind a transaction-mode pooler (PgBouncer pool_mode=transaction), and
// don't set pgtrail.* at session level yourself on a pool's connections: the hooks reset only what
// they set. Use BeginTx wherever the code manages its transactions: it needs no reset and no
// extra round trip.
func ConfigurePool(cfg *pgxpool.Config) {
	// Connections that carry an Actor. A connection is either acquired or being released, never
	// both, so the hooks for one connection never run concurrently.
	var dirty sync.Map // *pgx.Conn -> struct{}

	prepare := cfg.PrepareConn
	if prepare == nil && cfg.BeforeAcquire != nil {
		before := cfg.BeforeAcquire
		prepare = func(ctx context.Context, c *pgx.Conn) (bool, error) { return before(ctx, c), nil }
	}
	cfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		if prepare != nil {
			if ok, err := prepare(ctx, c); !ok || err != nil {
				return ok, err
			}
		}
		a, ok := From(ctx)
		if !ok {
			return true, nil
		}
		dirty.Store(c, struct{}{})
		if _, err := c.Exec(ctx, setSettingsSQL, append(settingArgs(a), false)...); err != nil {
			// false: the connection's settings are unknown now, so it must not serve anyone.
			return false, fmt.Errorf("apply audit context: %w", err)
		}
		return true, nil
	}

	release := cfg.AfterRelease
	cfg.AfterRelease = func(c *pgx.Conn) bool {
		if release != nil && !release(c) {
			return false
		}
		if _, ok := dirty.Load(c); !ok {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
		defer cancel()
		if _, err := c.Exec(ctx, setSettingsSQL, append(settingArgs(Actor{}), false)...); err != nil {
			return false
		}
		dirty.Delete(c)
		return true
	}

	closing := cfg.BeforeClose
	cfg.BeforeClose = func(c *pgx.Conn) {
		dirty.Delete(c)
		if closing != nil {
			closing(c)
		}
	}
}
