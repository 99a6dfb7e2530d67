// Package auditctx attaches the application's actor context (who, from which IP, with which user
// agent and request id, for which tenant) to the writes that pgtrail's capture triggers record.
//
// The triggers read the session settings pgtrail.actor_id, pgtrail.actor_ip, pgtrail.user_agent,
// pgtrail.request_id and pgtrail.tenant_id. This package carries an [Actor] in a
// [context.Context] and applies it to the database on the way out:
//
//   - [Middleware] fills the Actor from each HTTP request.
//   - [BeginTx] (pgx) and [BeginSQLTx] (database/sql) begin a transaction with the Actor applied
//     as transaction-local settings. This is the path to prefer: see "Guarantees" below.
//   - [ConfigurePool] installs pgxpool hooks that apply the Actor to a pooled connection for as
//     long as it is acquired, for code that runs statements on the pool without managing
//     transactions.
//   - [Log] and [LogSQL] record application events (LOGIN, EXPORT, VIEW_PII, ...) through
//     audit.log_event in the caller's transaction.
//
// A missing Actor, or an Actor without an ID, is not an error: the sealer then records the
// database user as the actor. Empty fields are recorded as NULL, never as empty strings.
//
// # Guarantees
//
// BeginTx and BeginSQLTx set all five settings with set_config(..., true) as the first statement
// of the transaction (empty when ctx carries no Actor, which also hides any session-level value a
// connection might carry). Every audited write and every event of that transaction carries the
// Actor of the ctx given to BeginTx. The settings end with the transaction, committed or rolled
// back, so they cannot reach the connection's next user, whatever pool or proxy sits between
// (transaction-mode PgBouncer included). BeginTx sends BEGIN and the settings in one round trip;
// BeginSQLTx needs one round trip after BEGIN, because database/sql sends BEGIN on its own.
//
// ConfigurePool sets the settings at session level when the pool hands out a connection, from
// the ctx given to the call that acquired it (Pool.Exec, Query, QueryRow, SendBatch, Begin,
// BeginTx, CopyFrom, Acquire, AcquireFunc), and resets them when the connection is released,
// before any other caller can acquire it; a connection whose reset fails is destroyed instead of
// returned to the pool. So a pooled connection never carries one request's Actor into another
// request's writes. What it does not do: a connection acquired with ctx A carries A until its
// release, whatever ctx its later statements pass; it costs a round trip at acquire and at release
// whenever ctx carries an Actor; and it must not be used behind a transaction-mode connection
// pooler such as PgBouncer, which may run each statement on a different server connection.
//
// Log and LogSQL record the event in the caller's transaction, so the event exists if and only if
// that transaction commits. When ctx carries an Actor, they apply it to the transaction in the
// same statement first, so the event (and the transaction's later writes) carry that Actor even in
// a transaction this package did not begin.
package auditctx

import (
	"context"
	"strings"
	"unicode/utf8"
)

// Actor is who performs the current unit of work, as the audit trail records it. Every field is
// optional; empty fields are recorded as NULL, and an empty ID as the database user.
type Actor struct {
	// ID identifies the authenticated user (or service) in the application, e.g. a user id.
	ID string
	// IP is the client's address. A value PostgreSQL cannot parse as inet is kept as text in
	// audit.events.actor_ip_raw.
	IP string
	// UserAgent is the client's User-Agent.
	UserAgent string
	// RequestID correlates the audit entries of one request with the application's logs.
	RequestID string
	// TenantID identifies the tenant in a multi-tenant application.
	TenantID string
}

type ctxKey struct{}

// With returns a copy of ctx that carries a.
func With(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// From returns the Actor ctx carries and whether it carries one.
func From(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(ctxKey{}).(Actor)
	return a, ok
}

// setSettingsSQL sets the settings the capture triggers and audit.log_event read ($1-$5, see
// settingArgs), transaction-local when $6 is true: one statement text, one cached prepared
// statement, for every caller.
const setSettingsSQL = `SELECT set_config('pgtrail.actor_id', $1, $6), set_config('pgtrail.actor_ip', $2, $6),
       set_config('pgtrail.user_agent', $3, $6), set_config('pgtrail.request_id', $4, $6),
       set_config('pgtrail.tenant_id', $5, $6)`

// settingArgs returns the values of the five settings for a, in the order of setSettingsSQL's
// $1 to $5; its $6 is is_local.
func settingArgs(a Actor) []any {
	return []any{settingValue(a.ID), settingValue(a.IP), settingValue(a.UserAgent),
		settingValue(a.RequestID), settingValue(a.TenantID)}
}

// settingValue makes s acceptable to PostgreSQL as text: a NUL byte or invalid UTF-8 (which a
// client can put in a User-Agent) would otherwise make set_config, and with it the business
// write, fail.
func settingValue(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
