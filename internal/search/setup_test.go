package search_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// fixture is a database with an audited customers table whose email, phone and name are PII,
// events of tenants acme and globex and of none, and login roles for each kind of reader.
type fixture struct {
	db  *pgxpool.Pool // superuser
	url string
	// Login roles (unique per test: roles are cluster-wide).
	reader, acmeReader, auditor, globexReader, nobody string
}

// The PII values the fixture writes; a reader must never see them.
var secrets = []string{"alice@example.com", "+1-555-0100", "Alice Liddell", "bob@example.com", "198.51.100.77", "not-an-ip-secret"}

func setup(t *testing.T) *fixture {
	t.Helper()
	db, url := testdb.New(t)
	f := &fixture{db: db, url: url}
	suffix := randomSuffix()
	f.reader, f.acmeReader, f.auditor, f.globexReader, f.nobody =
		"reader_"+suffix, "acme_"+suffix, "auditor_"+suffix, "globex_aud_"+suffix, "nobody_"+suffix
	for _, r := range []string{f.reader, f.acmeReader, f.auditor, f.globexReader, f.nobody} {
		testdb.Exec(t, db, "CREATE ROLE "+pgx.Identifier{r}.Sanitize()+" LOGIN")
		t.Cleanup(func() {
			ctx := context.Background()
			db.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{r}.Sanitize())
			db.Exec(ctx, "DROP ROLE "+pgx.Identifier{r}.Sanitize())
		})
	}
	testdb.Exec(t, db, "GRANT pgtrail_reader TO "+pgx.Identifier{f.reader}.Sanitize())
	testdb.Exec(t, db, "GRANT pgtrail_auditor TO "+pgx.Identifier{f.auditor}.Sanitize())
	testdb.Exec(t, db, "SELECT audit.add_tenant_reader($1::regrole, 'acme')", f.acmeReader)
	testdb.Exec(t, db, "SELECT audit.add_tenant_reader($1::regrole, 'globex')", f.globexReader)
	// The readers get a schema of their own to try leaky functions from.
	testdb.Exec(t, db, "CREATE SCHEMA scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC")

	testdb.Exec(t, db, `CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text, phone text, plan text)`)
	testdb.Exec(t, db, `SELECT audit.enable('public.customers', exclude_columns => '{}', pii_columns => '{email,phone,name}')`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'acme'; SET LOCAL pgtrail.actor_id = 'alice';
		SET LOCAL pgtrail.actor_ip = '198.51.100.77';
		INSERT INTO customers VALUES (1, 'Alice Liddell', 'alice@example.com', '+1-555-0100', 'free');
		UPDATE customers SET plan = 'pro', email = 'alice@example.com' WHERE id = 1;
		SELECT audit.log_event('VIEW_PII', 'public.customers', '1', 'SUCCESS', '{"email": "alice@example.com", "reason": "support"}');
		COMMIT`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'globex'; SET LOCAL pgtrail.actor_id = 'bob';
		SET LOCAL pgtrail.actor_ip = 'not-an-ip-secret';
		INSERT INTO customers VALUES (2, 'Bob', 'bob@example.com', NULL, 'free');
		COMMIT`)
	testdb.Exec(t, db, `SELECT audit.log_event('LOGIN', 'session', 's-1')`) // no tenant
	testdb.Seal(t, db)
	return f
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// connect logs in as role, collecting the server's notices.
func (f *fixture) connect(t *testing.T, role string) (*pgx.Conn, *[]string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	notices := &[]string{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Message) }
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, notices
}

// dump returns every row of sql as text, one string per row.
func dump(t *testing.T, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, v := range vals {
			b.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\t", " ")))
			b.WriteString("|")
		}
		out = append(out, b.String())
	}
	return out, rows.Err()
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return hex.EncodeToString(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// leaks returns the secrets that appear in any of texts.
func leaks(texts ...string) []string {
	var found []string
	all := strings.Join(texts, "\n")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			found = append(found, s)
		}
	}
	return found
}
