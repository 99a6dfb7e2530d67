package auditctx_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgtrail/pgtrail/auditctx"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// testDB is a fresh database with the audit schema, an audited table items(id, written_by, note)
// and an application role that may write it but not read the trail.
type testDB struct {
	admin    *pgxpool.Pool // superuser: seals and reads the trail
	appUser  string
	appConns *pgx.ConnConfig // connects as appUser
}

func setup(t *testing.T) *testDB {
	t.Helper()
	admin, url := testdb.New(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}

	// Roles are cluster-wide: a random name keeps parallel tests and external servers apart.
	db := &testDB{admin: admin, appUser: "app_" + randomHex(6), appConns: cfg.Copy()}
	password := randomHex(16)
	db.appConns.User, db.appConns.Password = db.appUser, password
	testdb.Exec(t, admin, "CREATE ROLE "+pgx.Identifier{db.appUser}.Sanitize()+" LOGIN PASSWORD '"+password+"'")
	// Registered before any app connection opens, so it runs after they are all closed.
	t.Cleanup(func() {
		role := pgx.Identifier{db.appUser}.Sanitize()
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := admin.Exec(context.Background(), q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	testdb.Exec(t, admin, `CREATE TABLE public.items (id bigint PRIMARY KEY, written_by text, note text)`)
	testdb.Exec(t, admin, `SELECT audit.enable('public.items')`)
	testdb.Exec(t, admin, "GRANT SELECT, INSERT, UPDATE, DELETE ON public.items TO "+pgx.Identifier{db.appUser}.Sanitize())
	return db
}

// pool opens a pool of at most maxConns application connections, with ConfigurePool's hooks when
// hooked.
func (db *testDB) pool(t *testing.T, maxConns int32, hooked bool) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		t.Fatalf("pool config: %v", err)
	}
	cfg.ConnConfig = db.appConns.Copy()
	cfg.MaxConns = maxConns
	if hooked {
		auditctx.ConfigurePool(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// sqlDB opens a database/sql handle of at most maxConns application connections.
func (db *testDB) sqlDB(t *testing.T, maxConns int) *sql.DB {
	t.Helper()
	sdb := stdlib.OpenDB(*db.appConns.Copy())
	sdb.SetMaxOpenConns(maxConns)
	t.Cleanup(func() { sdb.Close() })
	return sdb
}

// conn opens one application connection.
func (db *testDB) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.ConnectConfig(context.Background(), db.appConns)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// entry is what the tests read back of an audit entry. Nullable columns are pointers, so that a
// NULL and an empty string stay apart.
type entry struct {
	Action       string
	ResourceType string
	ResourceID   *string
	Outcome      string
	ActorID      string
	ActorIP      *string
	ActorIPRaw   *string
	UserAgent    *string
	RequestID    *string
	TenantID     *string
	DBUser       string
	After        map[string]any
	Details      map[string]any
}

// events seals everything the test wrote and returns the sealed entries of the given resource
// type, in chain order.
func (db *testDB) events(t *testing.T, resourceType string) []entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testdb.Seal(t, db.admin)
	rows, err := db.admin.Query(ctx, `
		SELECT action_type, resource_type, resource_id, outcome, actor_id, host(actor_ip), actor_ip_raw,
		       actor_user_agent, request_id, tenant_id, db_user, after_state, details
		  FROM audit.events WHERE resource_type = $1 ORDER BY seq`, resourceType)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
		var e entry
		err := r.Scan(&e.Action, &e.ResourceType, &e.ResourceID, &e.Outcome, &e.ActorID, &e.ActorIP,
			&e.ActorIPRaw, &e.UserAgent, &e.RequestID, &e.TenantID, &e.DBUser, &e.After, &e.Details)
		return e, err
	})
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// str shows a nullable column in failure messages.
func str(p *string) string {
	if p == nil {
		return "NULL"
	}
	return *p
}
