package auditctx_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/auditctx"
)

const insertItem = `INSERT INTO public.items (id, written_by, note) VALUES ($1, $2, $3)`

// writePath is one way the application can write with an Actor in ctx. It writes the row id of
// items, or, for the event paths, logs an EXPORT event about items/id; either way the audit entry
// has resource id id.
type writePath struct {
	name         string
	resourceType string
	write        func(ctx context.Context, id int64) error
}

// writePaths returns every write path, on pools of two connections.
func writePaths(t *testing.T, db *testDB) []writePath {
	pool := db.pool(t, 2, false)
	hooked := db.pool(t, 2, true)
	sdb := db.sqlDB(t, 2)
	conn := db.conn(t)
	insert := func(ctx context.Context, tx interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, id int64) error {
		_, err := tx.Exec(ctx, insertItem, id, "", "")
		return err
	}
	return []writePath{
		{name: "BeginTxPool", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, pool, pgx.TxOptions{}) },
				func(tx pgx.Tx) error { return insert(ctx, tx, id) })
		}},
		{name: "BeginTxConn", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, conn, pgx.TxOptions{}) },
				func(tx pgx.Tx) error { return insert(ctx, tx, id) })
		}},
		{name: "BeginTxPoolConn", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			c, err := pool.Acquire(context.Background())
			if err != nil {
				return err
			}
			defer c.Release()
			return inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, c, pgx.TxOptions{}) },
				func(tx pgx.Tx) error { return insert(ctx, tx, id) })
		}},
		{name: "BeginSQLTxDB", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			return inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, sdb, nil) },
				func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, insertItem, id, "", ""); return err })
		}},
		{name: "BeginSQLTxConn", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			c, err := sdb.Conn(context.Background())
			if err != nil {
				return err
			}
			defer c.Close()
			return inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, c, nil) },
				func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, insertItem, id, "", ""); return err })
		}},
		{name: "ConfigurePoolExec", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			return insert(ctx, hooked, id)
		}},
		{name: "ConfigurePoolBegin", resourceType: "public.items", write: func(ctx context.Context, id int64) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return hooked.Begin(ctx) },
				func(tx pgx.Tx) error { return insert(ctx, tx, id) })
		}},
		{name: "LogInBeginTx", resourceType: "items", write: func(ctx context.Context, id int64) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, pool, pgx.TxOptions{}) },
				func(tx pgx.Tx) error { return auditctx.Log(ctx, tx, exportEvent(id)) })
		}},
		// A transaction begun without this package: Log applies ctx's Actor itself.
		{name: "LogInPlainTx", resourceType: "items", write: func(ctx context.Context, id int64) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return pool.Begin(ctx) },
				func(tx pgx.Tx) error { return auditctx.Log(ctx, tx, exportEvent(id)) })
		}},
		{name: "LogSQLInBeginSQLTx", resourceType: "items", write: func(ctx context.Context, id int64) error {
			return inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, sdb, nil) },
				func(tx *sql.Tx) error { return auditctx.LogSQL(ctx, tx, exportEvent(id)) })
		}},
		{name: "LogSQLInPlainTx", resourceType: "items", write: func(ctx context.Context, id int64) error {
			return inSQLTx(ctx, func() (*sql.Tx, error) { return sdb.BeginTx(ctx, nil) },
				func(tx *sql.Tx) error { return auditctx.LogSQL(ctx, tx, exportEvent(id)) })
		}},
	}
}

// inPgxTx begins a transaction, runs f in it and commits.
func inPgxTx(ctx context.Context, begin func() (pgx.Tx, error), f func(pgx.Tx) error) error {
	tx, err := begin()
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// inSQLTx is inPgxTx for database/sql.
func inSQLTx(ctx context.Context, begin func() (*sql.Tx, error), f func(*sql.Tx) error) error {
	tx, err := begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// byResourceID indexes entries by resource id.
func byResourceID(t *testing.T, entries []entry) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	for _, e := range entries {
		id := str(e.ResourceID)
		if _, dup := m[id]; dup {
			t.Fatalf("two audit entries for resource id %s", id)
		}
		m[id] = e
	}
	return m
}

func TestWritePath_RecordsActor(t *testing.T) {
	t.Parallel()
	db := setup(t)
	paths := writePaths(t, db)
	want := map[int64]auditctx.Actor{}
	for i, p := range paths {
		id := int64(i + 1)
		a := auditctx.Actor{ID: "user-" + p.name, IP: "203.0.113." + strconv.Itoa(i+1), UserAgent: "agent/" + p.name,
			RequestID: "req-" + p.name, TenantID: "tenant-" + p.name}
		want[id] = a
		if err := p.write(auditctx.With(context.Background(), a), id); err != nil {
			t.Fatalf("%s: write with an Actor: %v", p.name, err)
		}
	}
	got := byResourceID(t, append(db.events(t, "public.items"), db.events(t, "items")...))
	for i, p := range paths {
		id := int64(i + 1)
		e, ok := got[strconv.FormatInt(id, 10)]
		if !ok {
			t.Errorf("%s: no audit entry for the write", p.name)
			continue
		}
		a := want[id]
		if e.ActorID != a.ID || str(e.ActorIP) != a.IP || e.ActorIPRaw != nil || str(e.UserAgent) != a.UserAgent ||
			str(e.RequestID) != a.RequestID || str(e.TenantID) != a.TenantID {
			t.Errorf("%s: entry has actor %q ip %s (raw %s) ua %s request %s tenant %s; want %+v",
				p.name, e.ActorID, str(e.ActorIP), str(e.ActorIPRaw), str(e.UserAgent), str(e.RequestID), str(e.TenantID), a)
		}
		if e.DBUser != db.appUser {
			t.Errorf("%s: db_user = %q, want the application role %q", p.name, e.DBUser, db.appUser)
		}
	}
}

func TestWritePath_MissingActorIsDatabaseUser(t *testing.T) {
	t.Parallel()
	db := setup(t)
	paths := writePaths(t, db)
	// Both a context without an Actor and an Actor without fields must come out the same.
	ctxs := map[string]context.Context{
		"NoActor":    context.Background(),
		"EmptyActor": auditctx.With(context.Background(), auditctx.Actor{}),
	}
	var id int64
	names := map[string]string{}
	for cname, ctx := range ctxs {
		for _, p := range paths {
			id++
			names[strconv.FormatInt(id, 10)] = cname + "/" + p.name
			if err := p.write(ctx, id); err != nil {
				t.Fatalf("%s/%s: write without an actor: %v", cname, p.name, err)
			}
		}
	}
	got := byResourceID(t, append(db.events(t, "public.items"), db.events(t, "items")...))
	if len(got) != len(names) {
		t.Errorf("%d audit entries for %d writes", len(got), len(names))
	}
	for rid, name := range names {
		e, ok := got[rid]
		if !ok {
			t.Errorf("%s: no audit entry for the write", name)
			continue
		}
		if e.ActorID != db.appUser {
			t.Errorf("%s: actor_id = %q, want the database user %q", name, e.ActorID, db.appUser)
		}
		if e.ActorIP != nil || e.ActorIPRaw != nil || e.UserAgent != nil || e.RequestID != nil || e.TenantID != nil {
			t.Errorf("%s: ip %s raw %s ua %s request %s tenant %s; want all NULL, not empty strings",
				name, str(e.ActorIP), str(e.ActorIPRaw), str(e.UserAgent), str(e.RequestID), str(e.TenantID))
		}
	}
}

// TestPool_NoActorLeak runs writers of different actors, and anonymous writers, concurrently on two
// connections: every entry must carry its own writer's actor and request id, and an anonymous
// write on a connection an actor used before must carry no context at all.
func TestPool_NoActorLeak(t *testing.T) {
	t.Parallel()
	const writers, writes = 16, 20
	type writeFunc func(ctx context.Context, id int64, by, note string) error
	db := setup(t)
	pool := db.pool(t, 2, false)
	hooked := db.pool(t, 2, true)
	sdb := db.sqlDB(t, 2)
	pgxBeginTx := func(p auditctx.BatchSender) writeFunc {
		return func(ctx context.Context, id int64, by, note string) error {
			return inPgxTx(ctx, func() (pgx.Tx, error) { return auditctx.BeginTx(ctx, p, pgx.TxOptions{}) },
				func(tx pgx.Tx) error { _, err := tx.Exec(ctx, insertItem, id, by, note); return err })
		}
	}
	poolExec := func(ctx context.Context, id int64, by, note string) error {
		_, err := hooked.Exec(ctx, insertItem, id, by, note)
		return err
	}
	poolBegin := func(ctx context.Context, id int64, by, note string) error {
		return inPgxTx(ctx, func() (pgx.Tx, error) { return hooked.Begin(ctx) },
			func(tx pgx.Tx) error { _, err := tx.Exec(ctx, insertItem, id, by, note); return err })
	}
	poolAcquire := func(ctx context.Context, id int64, by, note string) error {
		return hooked.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
			_, err := c.Exec(ctx, insertItem, id, by, note)
			return err
		})
	}
	tests := []struct {
		name  string
		actor []writeFunc // used in turn by writers with an actor
		anon  []writeFunc // used in turn by anonymous writers
	}{
		{
			name:  "BeginTx",
			actor: []writeFunc{pgxBeginTx(pool)},
			anon: []writeFunc{func(ctx context.Context, id int64, by, note string) error {
				_, err := pool.Exec(ctx, insertItem, id, by, note)
				return err
			}},
		},
		{
			name: "BeginSQLTx",
			actor: []writeFunc{func(ctx context.Context, id int64, by, note string) error {
				return inSQLTx(ctx, func() (*sql.Tx, error) { return auditctx.BeginSQLTx(ctx, sdb, nil) },
					func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, insertItem, id, by, note); return err })
			}},
			anon: []writeFunc{func(ctx context.Context, id int64, by, note string) error {
				_, err := sdb.ExecContext(ctx, insertItem, id, by, note)
				return err
			}},
		},
		{name: "ConfigurePool", actor: []writeFunc{poolExec, poolBegin, poolAcquire}, anon: []writeFunc{poolExec, poolBegin}},
		{name: "Mixed", actor: []writeFunc{pgxBeginTx(hooked), poolExec}, anon: []writeFunc{poolExec, pgxBeginTx(hooked)}},
	}
	var next int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := next + 1
			var wg sync.WaitGroup
			errs := make(chan error, writers*writes)
			for g := range writers {
				anonymous := g%4 == 0
				ids := make([]int64, writes)
				for i := range ids {
					next++
					ids[i] = next
				}
				wg.Go(func() {
					for i, id := range ids {
						ctx, by, note, fns := context.Background(), "", "", tt.anon
						if !anonymous {
							by, note, fns = fmt.Sprintf("actor-%d", g), fmt.Sprintf("req-%d", id), tt.actor
							ctx = auditctx.With(ctx, auditctx.Actor{ID: by, RequestID: note, IP: fmt.Sprintf("198.51.100.%d", g)})
						}
						if err := fns[i%len(fns)](ctx, id, by, note); err != nil {
							errs <- fmt.Errorf("writer %d, row %d: %w", g, id, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			n := 0
			for _, e := range db.events(t, "public.items") {
				id, _ := strconv.ParseInt(str(e.ResourceID), 10, 64)
				if id < first {
					continue
				}
				n++
				by, note := e.After["written_by"].(string), e.After["note"].(string)
				wantActor, wantReq := by, &note
				if by == "" {
					wantActor, wantReq = db.appUser, nil
				}
				if e.ActorID != wantActor || str(e.RequestID) != str(wantReq) {
					t.Errorf("row %d written by %q with request %q: recorded as actor %q, request %s",
						id, by, note, e.ActorID, str(e.RequestID))
				}
				if by == "" && e.ActorIP != nil {
					t.Errorf("anonymous row %d: recorded with IP %s, leaked from another writer", id, str(e.ActorIP))
				}
			}
			if n != writers*writes {
				t.Errorf("%d audit entries for %d writes", n, writers*writes)
			}
		})
	}
}

// TestRollback_LeavesNoContext rolls back a transaction that wrote and logged an event with an
// Actor, then writes without one on the same (only) connection: nothing of the rolled-back
// transaction may be recorded, and neither the connection nor the later write may carry its context.
func TestRollback_LeavesNoContext(t *testing.T) {
	t.Parallel()
	db := setup(t)
	ctx := auditctx.With(context.Background(), auditctx.Actor{ID: "mallory", IP: "203.0.113.66", RequestID: "rolled-back", TenantID: "t"})
	pool := db.pool(t, 1, false)
	hooked := db.pool(t, 1, true)
	sdb := db.sqlDB(t, 1)
	pgxRolledBack := func(begin func(context.Context) (pgx.Tx, error)) func(context.Context, int64) error {
		return func(ctx context.Context, id int64) error {
			tx, err := begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, insertItem, id, "mallory", ""); err != nil {
				return err
			}
			if err := auditctx.Log(ctx, tx, exportEvent(id)); err != nil {
				return err
			}
			return tx.Rollback(ctx)
		}
	}
	tests := []struct {
		name       string
		rolledBack func(ctx context.Context, id int64) error
		plain      func(ctx context.Context, id int64) error
		setting    func(ctx context.Context) (string, error) // pgtrail.actor_id outside a transaction
	}{
		{
			name: "BeginTx",
			rolledBack: pgxRolledBack(func(ctx context.Context) (pgx.Tx, error) {
				return auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
			}),
			plain: func(ctx context.Context, id int64) error {
				_, err := pool.Exec(ctx, insertItem, id, "", "")
				return err
			},
			setting: func(ctx context.Context) (s string, err error) {
				return s, pool.QueryRow(ctx, actorSetting).Scan(&s)
			},
		},
		{
			name:       "ConfigurePool",
			rolledBack: pgxRolledBack(hooked.Begin),
			plain: func(ctx context.Context, id int64) error {
				_, err := hooked.Exec(ctx, insertItem, id, "", "")
				return err
			},
			setting: func(ctx context.Context) (s string, err error) {
				return s, hooked.QueryRow(ctx, actorSetting).Scan(&s)
			},
		},
		{
			name: "BeginSQLTx",
			rolledBack: func(ctx context.Context, id int64) error {
				tx, err := auditctx.BeginSQLTx(ctx, sdb, nil)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, insertItem, id, "mallory", ""); err != nil {
					return err
				}
				if err := auditctx.LogSQL(ctx, tx, exportEvent(id)); err != nil {
					return err
				}
				return tx.Rollback()
			},
			plain: func(ctx context.Context, id int64) error {
				_, err := sdb.ExecContext(ctx, insertItem, id, "", "")
				return err
			},
			setting: func(ctx context.Context) (s string, err error) {
				return s, sdb.QueryRowContext(ctx, actorSetting).Scan(&s)
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rolledBack, plain := int64(10*i+1), int64(10*i+2)
			if err := tt.rolledBack(ctx, rolledBack); err != nil {
				t.Fatalf("write, log and roll back: %v", err)
			}
			if s, err := tt.setting(context.Background()); err != nil || s != "" {
				t.Errorf("after the rollback the connection has pgtrail.actor_id = %q (%v), want empty", s, err)
			}
			if err := tt.plain(context.Background(), plain); err != nil {
				t.Fatalf("write without an actor: %v", err)
			}
			got := byResourceID(t, append(db.events(t, "public.items"), db.events(t, "items")...))
			if e, ok := got[strconv.FormatInt(rolledBack, 10)]; ok {
				t.Errorf("the rolled-back transaction left an entry: %s by %s", e.Action, e.ActorID)
			}
			e, ok := got[strconv.FormatInt(plain, 10)]
			if !ok {
				t.Fatal("no entry for the write after the rollback")
			}
			if e.ActorID != db.appUser || e.ActorIP != nil || e.RequestID != nil || e.TenantID != nil {
				t.Errorf("write after the rollback recorded as actor %q ip %s request %s tenant %s; want %q and NULLs",
					e.ActorID, str(e.ActorIP), str(e.RequestID), str(e.TenantID), db.appUser)
			}
		})
	}
}

const actorSetting = `SELECT coalesce(current_setting('pgtrail.actor_id', true), '')`

func exportEvent(id int64) auditctx.Event {
	return auditctx.Event{Action: auditctx.ActionExport, ResourceType: "items", ResourceID: strconv.FormatInt(id, 10),
		Details: map[string]any{"rows": 1}}
}
