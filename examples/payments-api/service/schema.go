package service

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaSQL creates the demo tables. The API relies on the CHECK constraints to refuse bad input.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS public.users (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id  text NOT NULL,
  name       text NOT NULL,
  email      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.payments (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id    text NOT NULL,
  user_id      bigint NOT NULL REFERENCES public.users,
  amount_cents bigint NOT NULL CHECK (amount_cents > 0),
  currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status       text NOT NULL DEFAULT 'captured' CHECK (status IN ('captured', 'refunded')),
  created_at   timestamptz NOT NULL DEFAULT now()
);`

// Setup creates the demo tables users and payments if they are missing and installs pgtrail's
// capture on those not audited yet, so that running it again records nothing new. It needs the
// audit schema (pgtrail migrate up) and the right to create tables and triggers.
func Setup(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("set up demo tables: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create demo tables: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		SELECT audit.enable(t) FROM unnest('{public.users,public.payments}'::regclass[]) AS t
		 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = t AND tgname = 'pgtrail_capture')`); err != nil {
		return fmt.Errorf("enable audit on demo tables: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("set up demo tables: %w", err)
	}
	return nil
}
