package pgschema_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/pgschema"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func migrator(t *testing.T, url string, force bool) *pgschema.Migrator {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pgschema.NewMigrator(context.Background(), cfg, force)
	if err != nil {
		t.Fatalf("migrator: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func schemaExists(t *testing.T, url string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'audit')`).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMigrator_UpDownUp installs, refuses to destroy audit data without force, destroys it with
// force, and installs again.
func TestMigrator_UpDownUp(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	m := migrator(t, url, false)
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("second up must be a no-op: %v", err)
	}
	if v, dirty, err := m.Version(); err != nil || v != pgschema.LatestVersion() || dirty {
		t.Fatalf("version = %d dirty=%v err=%v, want %d", v, dirty, err, pgschema.LatestVersion())
	}
	db := testdb.Pool(t, url)
	testdb.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); SELECT audit.enable('t'); INSERT INTO t VALUES (1)`)
	testdb.Seal(t, db)

	// Without force: refused, and the schema and its data survive.
	if err := m.Down(ctx); !errors.Is(err, pgschema.ErrHoldsAuditData) {
		t.Fatalf("down without force: err = %v, want ErrHoldsAuditData", err)
	}
	if !schemaExists(t, url) {
		t.Fatal("refused down dropped the schema")
	}
	if v, dirty, _ := m.Version(); v != pgschema.LatestVersion() || dirty {
		t.Fatalf("after refused down: version %d dirty=%v, want %d clean", v, dirty, pgschema.LatestVersion())
	}

	mf := migrator(t, url, true)
	if err := mf.Down(ctx); err != nil {
		t.Fatalf("down with force: %v", err)
	}
	if schemaExists(t, url) {
		t.Fatal("schema still there after forced down")
	}
	var triggers int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass`).Scan(&triggers); err != nil || triggers != 0 {
		t.Fatalf("capture triggers left on t after down: %d (%v)", triggers, err)
	}
	testdb.Exec(t, db, `INSERT INTO t VALUES (2)`) // the application keeps working without pgtrail
	if err := mf.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if v, _, _ := mf.Version(); v != pgschema.LatestVersion() {
		t.Fatalf("version after up again = %d", v)
	}
}

// TestMigrator_FailureLeavesNothing runs the migration where it must fail (a non-UTF8 database)
// and checks that nothing was installed and the version is not left dirty.
func TestMigrator_FailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	admin := testdb.Pool(t, url)
	testdb.Exec(t, admin, `CREATE DATABASE latin1_db ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`)
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP DATABASE IF EXISTS latin1_db WITH (FORCE)`) })
	cfg, _ := pgx.ParseConfig(url)
	cfg.Database = "latin1_db"
	m, err := pgschema.NewMigrator(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	err = m.Up(ctx)
	if err == nil || !strings.Contains(err.Error(), "needs a UTF8 database") {
		t.Fatalf("up on LATIN1: err = %v, want a clear encoding error", err)
	}
	if v, dirty, err := m.Version(); err != nil || v != 0 || dirty {
		t.Fatalf("after failed up: version %d dirty=%v err=%v, want 0 clean", v, dirty, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'audit'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("audit schema half-installed: %d (%v)", n, err)
	}
}

// TestMigrator_FailureMidRun: when a run of several migrations fails at a later one, the ones
// before it are committed and the recorded version must say so (not the version the run started
// from), clean, so that the next run picks up where this one stopped. A test event trigger makes
// 000004 fail on the way up and 000001 fail on the way down.
func TestMigrator_FailureMidRun(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	admin := testdb.Pool(t, url)
	testdb.Exec(t, admin, `
		CREATE FUNCTION public.trap() RETURNS event_trigger LANGUAGE plpgsql AS $$
		BEGIN
		  IF current_setting('test.trap', true) = 'up' AND current_query() LIKE '%audit.derive_uuid%'
		     OR current_setting('test.trap', true) = 'down' AND tg_tag = 'DROP SCHEMA' THEN
		    RAISE EXCEPTION 'trapped';
		  END IF;
		END $$;
		CREATE EVENT TRIGGER trap ON ddl_command_start EXECUTE FUNCTION public.trap();`)
	setTrap := func(v string) {
		testdb.Exec(t, admin, `SELECT set_config('test.trap', $1, false)`, v) // this session only
		testdb.Exec(t, admin, fmt.Sprintf(`ALTER DATABASE %s SET test.trap = %s`,
			pgx.Identifier{dbName(t, admin)}.Sanitize(), pgx.Identifier{v}.Sanitize()))
	}
	setTrap("up")
	m := migrator(t, url, true)
	if err := m.Up(ctx); err == nil || !strings.Contains(err.Error(), "trapped") {
		t.Fatalf("up with 000004 trapped: err = %v, want the trap's error", err)
	}
	if v, dirty, err := m.Version(); err != nil || v != 3 || dirty {
		t.Fatalf("after up failing at 000004: version %d dirty=%v err=%v, want 3 clean (1 and 3 are committed)", v, dirty, err)
	}
	setTrap("down")
	m = migrator(t, url, true)
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if err := m.Down(ctx); err == nil || !strings.Contains(err.Error(), "trapped") {
		t.Fatalf("down with 000001 trapped: err = %v, want the trap's error", err)
	}
	if v, dirty, err := m.Version(); err != nil || v != 1 || dirty {
		t.Fatalf("after down failing at 000001: version %d dirty=%v err=%v, want 1 clean (4 and 3 are reverted)", v, dirty, err)
	}
	setTrap("off")
	m = migrator(t, url, true)
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up from 1: %v", err)
	}
	if v, _, _ := m.Version(); v != pgschema.LatestVersion() {
		t.Fatalf("up from 1 reached %d, want %d", v, pgschema.LatestVersion())
	}
}

func dbName(t *testing.T, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) string {
	t.Helper()
	var name string
	if err := db.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestMigrator_NonSuperuserRefused: a member of pgtrail_owner (not a superuser) that may write
// the version table runs the migrations after version 7. What must survive: the refusal, named
// as such, before the migration changes anything (each later migration checks first, through
// audit.require_superuser).
func TestMigrator_NonSuperuserRefused(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	if err := migrator(t, url, false).To(ctx, 7); err != nil {
		t.Fatalf("to 7: %v", err)
	}
	db := testdb.Pool(t, url)
	role := fmt.Sprintf("owner_nosu_%d", time.Now().UnixNano())
	testdb.Exec(t, db, `CREATE ROLE `+role+` LOGIN IN ROLE pgtrail_owner; GRANT ALL ON pgtrail_schema_migrations TO `+role)
	t.Cleanup(func() { db.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	m, err := pgschema.NewMigrator(ctx, cfg, false)
	if err != nil {
		t.Fatalf("migrator as %s: %v", role, err)
	}
	defer m.Close()
	if err := m.Up(ctx); err == nil || !strings.Contains(err.Error(), "must run as a superuser") {
		t.Errorf("up as %s: err = %v, want a refusal naming the superuser rule", role, err)
	}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regprocedure('audit.event_class(text, text)') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("version 8's function exists after the refusal (%v)", err)
	}
}
