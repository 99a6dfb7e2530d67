package auditctx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SQLBeginner is what BeginSQLTx begins a transaction on: a *sql.DB or a *sql.Conn. BeginTx
// returns an error when no transaction was begun.
type SQLBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

var (
	_ SQLBeginner = (*sql.DB)(nil)
	_ SQLBeginner = (*sql.Conn)(nil)
)

// BeginSQLTx is BeginTx for database/sql: it begins a transaction on db and applies the Actor of
// ctx as transaction-local settings, in one round trip after BEGIN (database/sql sends BEGIN on
// its own). The driver must be a PostgreSQL driver that takes $n placeholders, such as pgx's
// stdlib. As with any database/sql transaction, cancelling ctx rolls it back.
func BeginSQLTx(ctx context.Context, db SQLBeginner, opts *sql.TxOptions) (*sql.Tx, error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("begin audited transaction: %w", err)
	}
	a, _ := From(ctx)
	if _, err := tx.ExecContext(ctx, setSettingsSQL, append(settingArgs(a), true)...); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
		return nil, fmt.Errorf("apply audit context: %w", err)
	}
	return tx, nil
}

// LogSQL is Log for database/sql: it records e through audit.log_event in tx, so that it is
// recorded if and only if tx commits, with the Actor of ctx applied first when ctx carries one.
func LogSQL(ctx context.Context, tx *sql.Tx, e Event) error {
	q, args, err := logStatement(ctx, e)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("log %s event: %w", e.Action, err)
	}
	return nil
}
