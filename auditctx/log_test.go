package auditctx_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/auditctx"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// TestLog_CommitsWithTransaction writes a row and logs an event in one transaction: both are
// recorded when it commits, neither when it rolls back.
func TestLog_CommitsWithTransaction(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 2, false)
	sdb := db.sqlDB(t, 2)
	ctx := auditctx.With(context.Background(), auditctx.Actor{ID: "alice", RequestID: "r-1"})
	login := func(id int64) auditctx.Event {
		return auditctx.Event{Action: auditctx.ActionLogin, ResourceType: "session", ResourceID: strconv.FormatInt(id, 10),
			Details: map[string]any{"method": "password"}}
	}
	tests := []struct {
		name   string
		commit bool
		run    func(id int64, commit bool) error
	}{
		{name: "PgxCommit", commit: true},
		{name: "PgxRollback", commit: false},
		{name: "SQLCommit", commit: true},
		{name: "SQLRollback", commit: false},
	}
	pgxRun := func(id int64, commit bool) error {
		tx, err := auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, insertItem, id, "alice", ""); err != nil {
			return err
		}
		if err := auditctx.Log(ctx, tx, login(id)); err != nil {
			return err
		}
		if commit {
			return tx.Commit(ctx)
		}
		return tx.Rollback(ctx)
	}
	sqlRun := func(id int64, commit bool) error {
		tx, err := auditctx.BeginSQLTx(ctx, sdb, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, insertItem, id, "alice", ""); err != nil {
			return err
		}
		if err := auditctx.LogSQL(ctx, tx, login(id)); err != nil {
			return err
		}
		if commit {
			return tx.Commit()
		}
		return tx.Rollback()
	}
	for i, tt := range tests {
		id := int64(i + 1)
		run := pgxRun
		if strings.HasPrefix(tt.name, "SQL") {
			run = sqlRun
		}
		if err := run(id, tt.commit); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
	}
	rows := byResourceID(t, db.events(t, "public.items"))
	events := byResourceID(t, db.events(t, "session"))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rid := strconv.Itoa(i + 1)
			_, gotRow := rows[rid]
			ev, gotEvent := events[rid]
			if gotRow != tt.commit || gotEvent != tt.commit {
				t.Fatalf("commit %v: business write recorded %v, event recorded %v; want both %v", tt.commit, gotRow, gotEvent, tt.commit)
			}
			if !tt.commit {
				return
			}
			if ev.Action != "LOGIN" || ev.Outcome != "SUCCESS" || ev.ActorID != "alice" || str(ev.RequestID) != "r-1" ||
				ev.Details["method"] != "password" {
				t.Errorf("event = %+v, want LOGIN SUCCESS by alice, request r-1, details {method: password}", ev)
			}
		})
	}
}

// TestLog_InvalidEventKeepsTransaction logs events audit.log_event would refuse in a transaction
// that has written: Log must refuse them itself, and the transaction must still commit its write.
func TestLog_InvalidEventKeepsTransaction(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 1, false)
	sdb := db.sqlDB(t, 1)
	tests := []struct {
		name  string
		event auditctx.Event
	}{
		{name: "EmptyAction", event: auditctx.Event{ResourceType: "x"}},
		{name: "LowerCaseAction", event: auditctx.Event{Action: "login", ResourceType: "x"}},
		{name: "LongAction", event: auditctx.Event{Action: strings.Repeat("A", 64), ResourceType: "x"}},
		{name: "NoResourceType", event: auditctx.Event{Action: "LOGIN"}},
		{name: "UnknownOutcome", event: auditctx.Event{Action: "LOGIN", ResourceType: "x", Outcome: "MAYBE"}},
		{name: "UnencodableDetails", event: auditctx.Event{Action: "LOGIN", ResourceType: "x", Details: math.Inf(1)}},
	}
	var id int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := auditctx.With(context.Background(), auditctx.Actor{ID: "alice"})
			id++
			pgxID := id
			err := inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, pool, pgx.TxOptions{}) }, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, insertItem, pgxID, "alice", ""); err != nil {
					return err
				}
				if err := auditctx.Log(ctx, tx, tt.event); !errors.Is(err, auditctx.ErrInvalidEvent) {
					t.Errorf("Log(%+v) = %v, want ErrInvalidEvent", tt.event, err)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("pgx: the transaction did not survive the refused event: %v", err)
			}
			id++
			sqlID := id
			err = inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, sdb, nil) }, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, insertItem, sqlID, "alice", ""); err != nil {
					return err
				}
				if err := auditctx.LogSQL(ctx, tx, tt.event); !errors.Is(err, auditctx.ErrInvalidEvent) {
					t.Errorf("LogSQL(%+v) = %v, want ErrInvalidEvent", tt.event, err)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("database/sql: the transaction did not survive the refused event: %v", err)
			}
		})
	}
	if got := len(db.events(t, "public.items")); got != int(id) {
		t.Errorf("%d business writes recorded, want %d", got, id)
	}
}

// TestLog_AppliesContextActor begins a transaction for an anonymous request, then logs a LOGIN
// with the user who just authenticated: the event and the later write carry the user, the earlier
// write does not.
func TestLog_AppliesContextActor(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 1, false)
	anon := auditctx.With(context.Background(), auditctx.Actor{IP: "203.0.113.5", RequestID: "login-1"})
	user := auditctx.With(anon, auditctx.Actor{ID: "alice", IP: "203.0.113.5", RequestID: "login-1", TenantID: "acme"})
	err := inPgxTx(anon, func() (pgx.Tx, error) { return auditctx.BeginTx(anon, pool, pgx.TxOptions{}) }, func(tx pgx.Tx) error {
		if _, err := tx.Exec(anon, insertItem, 1, "", ""); err != nil {
			return err
		}
		if err := auditctx.Log(user, tx, auditctx.Event{Action: auditctx.ActionLogin, ResourceType: "items", ResourceID: "2"}); err != nil {
			return err
		}
		_, err := tx.Exec(anon, insertItem, 3, "alice", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := byResourceID(t, append(db.events(t, "public.items"), db.events(t, "items")...))
	for rid, want := range map[string]string{"1": db.appUser, "2": "alice", "3": "alice"} {
		if e := got[rid]; e.ActorID != want || str(e.RequestID) != "login-1" {
			t.Errorf("entry %s: actor %q request %s, want %q and login-1", rid, e.ActorID, str(e.RequestID), want)
		}
	}
	if e := got["2"]; str(e.TenantID) != "acme" {
		t.Errorf("LOGIN event tenant = %s, want acme", str(e.TenantID))
	}
}

// TestBeginTx_UnusualValues writes with Actor values a client or a careless caller can produce:
// the write must commit, and the values be recorded as close to what was given as PostgreSQL
// allows.
func TestBeginTx_UnusualValues(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 1, false)
	sdb := db.sqlDB(t, 1)
	tests := []struct {
		name        string
		actor       auditctx.Actor
		wantID      string
		wantIP      string // host(actor_ip), or NULL
		wantRaw     string // actor_ip_raw, or NULL
		wantAgent   string
		wantDetails string // details.note of a logged event
	}{
		{name: "IPv6", actor: auditctx.Actor{ID: "a", IP: "2001:db8::7"}, wantID: "a", wantIP: "2001:db8::7", wantRaw: "NULL", wantAgent: "NULL"},
		{name: "UnknownIP", actor: auditctx.Actor{ID: "a", IP: "unknown"}, wantID: "a", wantIP: "NULL", wantRaw: "unknown", wantAgent: "NULL"},
		{name: "InvalidUTF8Agent", actor: auditctx.Actor{ID: "a", UserAgent: "bad \xff agent"}, wantID: "a", wantIP: "NULL", wantRaw: "NULL", wantAgent: "bad \uFFFD agent"},
		{name: "NULInID", actor: auditctx.Actor{ID: "a\x00b"}, wantID: "a\uFFFDb", wantIP: "NULL", wantRaw: "NULL", wantAgent: "NULL"},
		{name: "Quotes", actor: auditctx.Actor{ID: `o'brien"; DROP TABLE items; --`}, wantID: `o'brien"; DROP TABLE items; --`, wantIP: "NULL", wantRaw: "NULL", wantAgent: "NULL"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := auditctx.With(context.Background(), tt.actor)
			rid := int64(i + 1)
			err := inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, pool, pgx.TxOptions{}) }, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, insertItem, rid, "", "")
				return err
			})
			if err != nil {
				t.Fatalf("pgx write with %+v: %v", tt.actor, err)
			}
			// A NUL in the details would make jsonb refuse the event, and abort the transaction.
			ev := auditctx.Event{Action: "NOTE", ResourceType: "note", ResourceID: strconv.Itoa(i + 1), Details: map[string]string{"note": "x\x00y\\u0000"}}
			err = inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, sdb, nil) }, func(tx *sql.Tx) error {
				return auditctx.LogSQL(ctx, tx, ev)
			})
			if err != nil {
				t.Fatalf("database/sql event with %+v: %v", tt.actor, err)
			}
		})
	}
	rows := byResourceID(t, db.events(t, "public.items"))
	notes := byResourceID(t, db.events(t, "note"))
	for i, tt := range tests {
		rid := strconv.Itoa(i + 1)
		for _, e := range []entry{rows[rid], notes[rid]} {
			if e.ActorID != tt.wantID || str(e.ActorIP) != tt.wantIP || str(e.ActorIPRaw) != tt.wantRaw || str(e.UserAgent) != tt.wantAgent {
				t.Errorf("%s: %s recorded actor %q ip %s raw %s agent %q; want %q %s %s %q", tt.name, e.Action,
					e.ActorID, str(e.ActorIP), str(e.ActorIPRaw), str(e.UserAgent), tt.wantID, tt.wantIP, tt.wantRaw, tt.wantAgent)
			}
		}
		if got := notes[rid].Details["note"]; got != "x\uFFFDy\\u0000" {
			t.Errorf("%s: details.note = %q, want the NUL replaced and the escaped text kept", tt.name, got)
		}
	}
}

// TestConfigurePool_AcquiringContext pins what the hook guarantees: the Actor belongs to the ctx
// that acquired the connection, statements on the acquired connection carry it whatever ctx they
// pass, and it is gone once the connection is released.
func TestConfigurePool_AcquiringContext(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 1, true)
	alice := auditctx.With(context.Background(), auditctx.Actor{ID: "alice"})
	bob := auditctx.With(context.Background(), auditctx.Actor{ID: "bob"})
	c, err := pool.Acquire(alice)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(bob, insertItem, 1, "", "")
	c.Release()
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.AcquireFunc(context.Background(), func(c *pgxpool.Conn) error {
		_, err := c.Exec(bob, insertItem, 2, "", "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got := byResourceID(t, db.events(t, "public.items"))
	if a := got["1"].ActorID; a != "alice" {
		t.Errorf("write on a connection acquired by alice, with bob's ctx: actor %q, want alice", a)
	}
	if a := got["2"].ActorID; a != db.appUser {
		t.Errorf("write on a connection acquired without an actor, after alice released it: actor %q, want %q", a, db.appUser)
	}
}

// TestConfigurePool_KeepsExistingHooks installs the hooks over a config that has its own: those
// must still run and still decide, and the actor must still be applied and reset.
func TestConfigurePool_KeepsExistingHooks(t *testing.T) {
	t.Parallel()
	db := setup(t)
	var prepared, released, closed atomic.Int32
	var refuse atomic.Bool
	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig = db.appConns.Copy()
	cfg.MaxConns = 1
	cfg.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) {
		prepared.Add(1)
		if refuse.Load() {
			return true, errors.New("refused by the application's hook")
		}
		return true, nil
	}
	cfg.AfterRelease = func(*pgx.Conn) bool { released.Add(1); return true }
	cfg.BeforeClose = func(*pgx.Conn) { closed.Add(1) }
	auditctx.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := auditctx.With(context.Background(), auditctx.Actor{ID: "alice"})
	if _, err := pool.Exec(ctx, insertItem, 1, "", ""); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if _, err := pool.Exec(ctx, insertItem, 2, "", ""); err == nil || !strings.Contains(err.Error(), "refused by the application's hook") {
		t.Errorf("Exec through a refusing PrepareConn = %v, want its error", err)
	}
	refuse.Store(false)
	var s string
	if err := pool.QueryRow(context.Background(), actorSetting).Scan(&s); err != nil || s != "" {
		t.Errorf("pgtrail.actor_id on the next anonymous acquire = %q (%v), want empty", s, err)
	}
	pool.Close()
	if prepared.Load() != 3 || released.Load() < 2 || closed.Load() != 1 {
		t.Errorf("application hooks ran: PrepareConn %d, AfterRelease %d, BeforeClose %d; want 3, ≥2, 1",
			prepared.Load(), released.Load(), closed.Load())
	}
	if got := byResourceID(t, db.events(t, "public.items")); len(got) != 1 || got["1"].ActorID != "alice" {
		t.Errorf("entries %+v, want only row 1 by alice", got)
	}
}

// TestMiddleware_ReachesAuditRow sends requests through Middleware to a handler that writes with
// BeginTx: the actor, IP, user agent and request id must reach the audit entry, and forwarding
// headers count only from a trusted proxy.
func TestMiddleware_ReachesAuditRow(t *testing.T) {
	t.Parallel()
	db := setup(t)
	pool := db.pool(t, 2, false)
	tests := []struct {
		name    string
		trusted []string
		wantIP  string
	}{
		{name: "SpoofedXFFIgnored", wantIP: "127.0.0.1"},
		{name: "TrustedProxy", trusted: []string{"127.0.0.0/8"}, wantIP: "198.51.100.23"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := auditctx.Middleware(auditctx.MiddlewareConfig{
				Actor:          func(r *http.Request) (string, string) { return r.Header.Get("X-Test-User"), "acme" },
				TrustedProxies: tt.trusted,
			})
			if err != nil {
				t.Fatal(err)
			}
			id := int64(i + 1)
			srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				err := inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, pool, pgx.TxOptions{}) }, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, insertItem, id, "", "")
					return err
				})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
			})))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
			req.Header.Set("X-Test-User", "alice")
			req.Header.Set("User-Agent", "audit-test/1.0")
			req.Header.Set("X-Request-Id", "req-"+tt.name)
			req.Header.Set("X-Forwarded-For", "198.51.100.23")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s", resp.Status)
			}
			e := byResourceID(t, db.events(t, "public.items"))[strconv.FormatInt(id, 10)]
			if e.ActorID != "alice" || str(e.ActorIP) != tt.wantIP || str(e.UserAgent) != "audit-test/1.0" ||
				str(e.RequestID) != "req-"+tt.name || str(e.TenantID) != "acme" {
				t.Errorf("entry: actor %q ip %s ua %s request %s tenant %s; want alice %s audit-test/1.0 req-%s acme",
					e.ActorID, str(e.ActorIP), str(e.UserAgent), str(e.RequestID), str(e.TenantID), tt.wantIP, tt.name)
			}
		})
	}
}

// TestLog_AutonomousSurvivesRollback logs a FAILED_LOGIN with Autonomous set in transactions that
// roll back, through pgx and database/sql: each must reach the trail all the same, with the
// context's actor, once pgtrail's stream (here seal --once's share of it) has read the WAL. The
// business write of the same transaction must not.
func TestLog_AutonomousSurvivesRollback(t *testing.T) {
	t.Parallel()
	db := setup(t)
	slot := "pgtrail_" + randomHex(6) // slot names are the cluster's
	testdb.Exec(t, db.admin, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	cfg, err := pgx.ParseConfig(db.admin.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	// The function writes only once pgtrail's stream (here seal --once's share of it) reads the
	// slot.
	if _, err := cdc.SealOnce(context.Background(), cdc.Config{ConnConfig: cfg, Slot: slot}); err != nil {
		t.Fatal(err)
	}
	pool := db.pool(t, 2, false)
	sdb := db.sqlDB(t, 2)
	ctx := auditctx.With(context.Background(), auditctx.Actor{ID: "mallory", RequestID: "r-9"})
	failed := func(id string) auditctx.Event {
		return auditctx.Event{Action: auditctx.ActionFailedLogin, ResourceType: "session", ResourceID: id,
			Outcome: auditctx.Failure, Details: map[string]any{"reason": "bad password"}, Autonomous: true}
	}
	tx, err := auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, insertItem, 1, "mallory", ""); err != nil {
		t.Fatal(err)
	}
	if err := auditctx.Log(ctx, tx, failed("pgx")); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	stx, err := auditctx.BeginSQLTx(ctx, sdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := auditctx.LogSQL(ctx, stx, failed("sql")); err != nil {
		t.Fatal(err)
	}
	stx.Rollback()

	if _, err := cdc.SealOnce(context.Background(), cdc.Config{ConnConfig: cfg, Slot: slot}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range db.events(t, "session") {
		got = append(got, e.Action+":"+str(e.ResourceID)+":"+e.Outcome+":"+e.ActorID+":"+str(e.RequestID)+":"+fmt.Sprint(e.Details["reason"]))
	}
	want := []string{"FAILED_LOGIN:pgx:FAILURE:mallory:r-9:bad password", "FAILED_LOGIN:sql:FAILURE:mallory:r-9:bad password"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events: %q, want %q", got, want)
	}
	if rows := db.events(t, "public.items"); len(rows) != 0 {
		t.Errorf("the rolled back insert reached the trail: %+v", rows)
	}
}
