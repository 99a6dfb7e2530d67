// Package service is the payments API of the pgtrail example: a tiny HTTP API over the demo tables
// users and payments that shows the whole path of an audited write. A request passes an
// authentication middleware, then auditctx.Middleware, which puts the actor, client IP, user agent
// and request id in its context; handlers write in transactions begun with auditctx.BeginTx, so
// the capture triggers record that context, and log application events (LOGIN, FAILED_LOGIN,
// VIEW_PII, EXPORT) with auditctx.Log in the same transaction.
package service

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/auditctx"
)

// Account is a demo login. Real services keep credentials hashed in a database; the example keeps
// them in memory so that it needs nothing but PostgreSQL.
type Account struct {
	User     string // the actor id recorded in the trail
	Tenant   string
	Password string
	Token    string // the bearer token POST /login returns
}

// DemoAccounts returns the accounts the demo uses: alice of tenant acme and bob of tenant globex.
func DemoAccounts() []Account {
	return []Account{
		{User: "alice", Tenant: "acme", Password: "alice-password", Token: "alice-token"},
		{User: "bob", Tenant: "globex", Password: "bob-password", Token: "bob-token"},
	}
}

// Config configures the API.
type Config struct {
	// Pool is where the API reads and writes. Required.
	Pool *pgxpool.Pool
	// Logger receives errors the API answers with 500; nil discards them.
	Logger *slog.Logger
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed (CIDRs or addresses).
	TrustedProxies []string
	// Accounts are the logins the API accepts; nil means DemoAccounts.
	Accounts []Account
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	if c.Pool == nil {
		return errors.New("Pool: required")
	}
	for i, a := range c.Accounts {
		if a.User == "" || a.Token == "" || a.Password == "" {
			return fmt.Errorf("Accounts[%d]: user, password and token are required", i)
		}
	}
	return auditctx.MiddlewareConfig{TrustedProxies: c.TrustedProxies}.Validate()
}

// api holds the handlers' dependencies.
type api struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	accounts []Account
}

type accountKey struct{}

// New returns the API's handler:
//
//	POST /login                  {"user", "password"} -> {"token"}; records LOGIN or FAILED_LOGIN
//	POST /users                  {"name", "email"} -> {"id"}
//	GET  /users/{id}             the user, email included; records VIEW_PII
//	POST /payments               {"user_id", "amount_cents", "currency"} -> {"id"}
//	POST /payments/{id}/refund   marks a captured payment refunded
//	GET  /payments/export        the tenant's payments; records EXPORT
//
// Every route but /login needs "Authorization: Bearer <token>" and sees only its tenant's rows.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("payments api: %w", err)
	}
	a := &api{pool: cfg.Pool, log: cfg.Logger, accounts: cfg.Accounts}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.accounts == nil {
		a.accounts = DemoAccounts()
	}
	audit, err := auditctx.Middleware(auditctx.MiddlewareConfig{
		Actor: func(r *http.Request) (string, string) {
			acc, _ := r.Context().Value(accountKey{}).(Account)
			return acc.User, acc.Tenant
		},
		TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return nil, fmt.Errorf("payments api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /users", a.requireAccount(a.createUser))
	mux.HandleFunc("GET /users/{id}", a.requireAccount(a.getUser))
	mux.HandleFunc("POST /payments", a.requireAccount(a.createPayment))
	mux.HandleFunc("POST /payments/{id}/refund", a.requireAccount(a.refundPayment))
	mux.HandleFunc("GET /payments/export", a.requireAccount(a.exportPayments))
	// Authentication wraps the audit middleware, so that its Actor function finds the account.
	return a.authenticate(audit(mux)), nil
}

// authenticate puts the account of a valid bearer token in the request's context.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			for _, acc := range a.accounts {
				if subtle.ConstantTimeCompare([]byte(token), []byte(acc.Token)) == 1 {
					r = r.WithContext(context.WithValue(r.Context(), accountKey{}, acc))
					break
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (a *api) requireAccount(h func(http.ResponseWriter, *http.Request, Account)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		acc, ok := r.Context().Value(accountKey{}).(Account)
		if !ok {
			writeError(w, http.StatusUnauthorized, "missing or unknown bearer token")
			return
		}
		h(w, r, acc)
	}
}

func (a *api) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ User, Password string }
	if !decode(w, r, &in) {
		return
	}
	ctx := r.Context()
	var acc *Account
	for i := range a.accounts {
		if a.accounts[i].User == in.User &&
			subtle.ConstantTimeCompare([]byte(in.Password), []byte(a.accounts[i].Password)) == 1 {
			acc = &a.accounts[i]
		}
	}
	if acc == nil {
		// The request is anonymous: the trail records the database user as the actor, and the
		// name that was tried in the details.
		ev := auditctx.Event{Action: auditctx.ActionFailedLogin, ResourceType: "session", Outcome: auditctx.Failure,
			Details: map[string]string{"user": in.User}}
		if a.inTx(w, ctx, func(tx pgx.Tx) error { return auditctx.Log(ctx, tx, ev) }) {
			writeError(w, http.StatusUnauthorized, "wrong user or password")
		}
		return
	}
	// The user has just proved who they are: from here on the request acts as them.
	actor, _ := auditctx.From(ctx)
	actor.ID, actor.TenantID = acc.User, acc.Tenant
	ctx = auditctx.With(ctx, actor)
	ev := auditctx.Event{Action: auditctx.ActionLogin, ResourceType: "session", ResourceID: acc.User}
	if a.inTx(w, ctx, func(tx pgx.Tx) error { return auditctx.Log(ctx, tx, ev) }) {
		writeJSON(w, http.StatusOK, map[string]string{"token": acc.Token})
	}
}

func (a *api) createUser(w http.ResponseWriter, r *http.Request, acc Account) {
	var in struct{ Name, Email string }
	if !decode(w, r, &in) {
		return
	}
	if in.Name == "" || !strings.Contains(in.Email, "@") {
		writeError(w, http.StatusBadRequest, "name and a valid email are required")
		return
	}
	var id int64
	if a.inTx(w, r.Context(), func(tx pgx.Tx) error {
		return tx.QueryRow(r.Context(), `INSERT INTO public.users (tenant_id, name, email) VALUES ($1, $2, $3) RETURNING id`,
			acc.Tenant, in.Name, in.Email).Scan(&id)
	}) {
		writeJSON(w, http.StatusCreated, map[string]int64{"id": id})
	}
}

func (a *api) getUser(w http.ResponseWriter, r *http.Request, acc Account) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	var u struct {
		ID    int64  `json:"id"`
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// The read and its VIEW_PII event share a transaction: no event without the read, and no
	// personal data handed out without the event.
	if a.inTx(w, ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id, name, email FROM public.users WHERE id = $1 AND tenant_id = $2`, id, acc.Tenant).
			Scan(&u.ID, &u.Name, &u.Email)
		if err != nil {
			return err
		}
		return auditctx.Log(ctx, tx, auditctx.Event{Action: auditctx.ActionViewPII, ResourceType: "public.users",
			ResourceID: strconv.FormatInt(id, 10), Details: map[string]any{"fields": []string{"email"}}})
	}) {
		writeJSON(w, http.StatusOK, u)
	}
}

func (a *api) createPayment(w http.ResponseWriter, r *http.Request, acc Account) {
	var in struct {
		UserID      int64  `json:"user_id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
	}
	if !decode(w, r, &in) {
		return
	}
	var id int64
	// The user must belong to the caller's tenant: no row, no payment.
	if a.inTx(w, r.Context(), func(tx pgx.Tx) error {
		return tx.QueryRow(r.Context(), `
			INSERT INTO public.payments (tenant_id, user_id, amount_cents, currency)
			SELECT tenant_id, id, $3, $4 FROM public.users WHERE id = $1 AND tenant_id = $2
			RETURNING id`, in.UserID, acc.Tenant, in.AmountCents, in.Currency).Scan(&id)
	}) {
		writeJSON(w, http.StatusCreated, map[string]int64{"id": id})
	}
}

func (a *api) refundPayment(w http.ResponseWriter, r *http.Request, acc Account) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if a.inTx(w, r.Context(), func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(r.Context(), `SELECT status FROM public.payments WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
			id, acc.Tenant).Scan(&status)
		if err != nil {
			return err
		}
		if status != "captured" {
			return errConflict
		}
		_, err = tx.Exec(r.Context(), `UPDATE public.payments SET status = 'refunded' WHERE id = $1`, id)
		return err
	}) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "refunded"})
	}
}

func (a *api) exportPayments(w http.ResponseWriter, r *http.Request, acc Account) {
	type payment struct {
		ID          int64  `json:"id"`
		UserID      int64  `json:"user_id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
		Status      string `json:"status"`
	}
	ctx := r.Context()
	var out []payment
	if a.inTx(w, ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, user_id, amount_cents, currency, status FROM public.payments
			WHERE tenant_id = $1 ORDER BY id`, acc.Tenant)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[payment]); err != nil {
			return err
		}
		return auditctx.Log(ctx, tx, auditctx.Event{Action: auditctx.ActionExport, ResourceType: "public.payments",
			Details: map[string]any{"rows": len(out), "format": "json"}})
	}) {
		writeJSON(w, http.StatusOK, map[string]any{"payments": out})
	}
}

// errConflict marks a request that the current state of the data refuses.
var errConflict = errors.New("conflict")

// inTx runs f in a transaction begun with auditctx.BeginTx, so that every write and event in it
// carries the request's audit context, and commits. On failure it answers the request itself and
// returns false.
func (a *api) inTx(w http.ResponseWriter, ctx context.Context, f func(pgx.Tx) error) bool {
	tx, err := auditctx.BeginTx(ctx, a.pool, pgx.TxOptions{})
	if err == nil {
		defer tx.Rollback(ctx)
		if err = f(tx); err == nil {
			err = tx.Commit(ctx)
		}
	}
	if err == nil {
		return true
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, errConflict):
		writeError(w, http.StatusConflict, "the payment is not in a state that allows this")
	case errors.As(err, &pgErr) && (pgErr.Code == "23514" || pgErr.Code == "23502"):
		writeError(w, http.StatusBadRequest, "invalid value: "+pgErr.ConstraintName)
	default:
		if !errors.Is(err, context.Canceled) {
			actor, _ := auditctx.From(ctx)
			a.log.ErrorContext(ctx, "request failed", "request_id", actor.RequestID, "err", err)
		}
		writeError(w, http.StatusInternalServerError, "internal error")
	}
	return false
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "id must be a positive integer")
		return 0, false
	}
	return id, true
}

// decode reads a JSON body of at most 64 KiB into v, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
