package pgschema_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/pgschema"
)

// TestMigrations_OneTransactionEach: each migration file runs as one multi-statement query,
// which PostgreSQL runs in one implicit transaction; the migrator relies on that to clear the
// dirty flag of a file that failed (nothing of it was applied). A statement that ends or
// escapes the transaction (COMMIT, BEGIN, ROLLBACK, CREATE INDEX CONCURRENTLY, VACUUM, ...)
// would leave half a file applied and the flag cleared: refused here, outside function bodies
// (where a procedure may COMMIT for itself) and comments.
func TestMigrations_OneTransactionEach(t *testing.T) {
	refused := regexp.MustCompile(`(?i)\b(COMMIT|BEGIN|ROLLBACK|START\s+TRANSACTION|SAVEPOINT|END\s*;|CONCURRENTLY|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|REINDEX\s+[A-Z ]*CONCURRENTLY)\b`)
	files, err := fs.Glob(pgschema.Migrations(), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations (%v)", err)
	}
	for _, name := range files {
		b, err := fs.ReadFile(pgschema.Migrations(), name)
		if err != nil {
			t.Fatal(err)
		}
		top := topLevel(string(b))
		if m := refused.FindString(top); m != "" {
			t.Errorf("%s: %q outside a function body: the file would not run as one transaction", name, m)
		}
	}
}

// TestTopLevel: the scanner behind TestMigrations_OneTransactionEach keeps what runs as a
// statement and drops comments, literals and dollar-quoted bodies.
func TestTopLevel(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"CREATE TABLE t (a int); -- COMMIT\nSELECT 1;", "CREATE TABLE t (a int); \nSELECT 1;"},
		{"SELECT 'COMMIT; it''s';", "SELECT '';"},
		{"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS ;"},
		{"DO $body$ BEGIN PERFORM '$$'; END $body$; COMMIT;", "DO ; COMMIT;"},
		{"/* BEGIN; */ CREATE INDEX CONCURRENTLY i ON t (a);", " CREATE INDEX CONCURRENTLY i ON t (a);"},
		{`SELECT "COMMIT" FROM t;`, `SELECT "" FROM t;`},
	} {
		if got := topLevel(c.in); got != c.want {
			t.Errorf("topLevel(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// topLevel returns sql without comments, the contents of string literals and quoted names, and
// dollar-quoted bodies (their quotes dropped too).
func topLevel(sql string) string {
	var b strings.Builder
	dollar := regexp.MustCompile(`^\$[A-Za-z_]*\$`)
	for i := 0; i < len(sql); {
		switch {
		case strings.HasPrefix(sql[i:], "--"):
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				return b.String()
			}
			i += end
		case strings.HasPrefix(sql[i:], "/*"):
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				return b.String()
			}
			i += 2 + end + 2
		case sql[i] == '\'' || sql[i] == '"':
			q := sql[i]
			b.WriteByte(q)
			j := i + 1
			for j < len(sql) {
				if sql[j] == q {
					if j+1 < len(sql) && sql[j+1] == q { // a doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			b.WriteByte(q)
			i = j + 1
		case sql[i] == '$' && dollar.MatchString(sql[i:]):
			tag := dollar.FindString(sql[i:])
			end := strings.Index(sql[i+len(tag):], tag)
			if end < 0 {
				return b.String()
			}
			i += len(tag) + end + len(tag)
		default:
			b.WriteByte(sql[i])
			i++
		}
	}
	return b.String()
}
