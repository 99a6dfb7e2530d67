package hostile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// role is who makes an attack.
type role string

// The roles of docs/design.md's threat model, and the two outside the database.
const (
	application   role = "application"    // writes audited tables
	reader        role = "reader"         // pgtrail_reader
	tenantReader  role = "tenant reader"  // reads its tenants' entries through audit.tenant_events
	auditor       role = "auditor"        // pgtrail_auditor
	ownerMember   role = "owner member"   // a LOGIN role IN ROLE pgtrail_owner
	tableOwner    role = "table owner"    // owns an audited table, in no pgtrail role
	superuser     role = "superuser"      // a LOGIN SUPERUSER role
	archiveWriter role = "archive writer" // writes files in a file:// archive directory
	cliCaller     role = "CLI caller"     // anyone who runs pgtrail with arguments of their choosing
)

// memberships are the grants that make a new login role the role named.
var memberships = map[role]string{
	application: "",
	reader:      " IN ROLE pgtrail_reader",
	auditor:     " IN ROLE pgtrail_auditor",
	ownerMember: " IN ROLE pgtrail_owner",
	superuser:   " SUPERUSER",
}

// world is what one case attacks: its own database (created on first use), an archive
// directory, a key pair, and the role the case runs as. Nothing is shared with other cases but
// the cluster, so cases run in parallel.
type world struct {
	t    *testing.T
	name string // the case's name, which names its role and slot
	who  role
	dir  string

	pool    *pgxpool.Pool // a superuser's, on the database
	url     string
	slot    string
	roleSQL string // the role's name, quoted, once created
}

func newWorld(t *testing.T, name string, who role) *world {
	return &world{t: t, name: name, who: who, dir: t.TempDir()}
}

// db returns a superuser pool on the world's database, migrated, with a replication slot of the
// world's own (slots are cluster-wide) that pgtrail stream, seal --once and verify are pointed at.
func (w *world) db() *pgxpool.Pool {
	w.t.Helper()
	if w.pool == nil {
		w.pool, w.url = testdb.New(w.t)
		w.slot = "hostile_" + strings.ToLower(w.name)
		testdb.Slot(w.t, w.pool, w.slot)
	}
	return w.pool
}

// su runs sql as the superuser that set the world up.
func (w *world) su(sql string, args ...any) {
	w.t.Helper()
	testdb.Exec(w.t, w.db(), sql, args...)
}

// roleName returns the login role of the world's case, created on first use with the grants
// that make it the role named: "hostile_<case>".
func (w *world) roleName() string {
	w.t.Helper()
	name := "hostile_" + strings.ToLower(w.name)
	if w.roleSQL != "" {
		return name
	}
	w.roleSQL = pgx.Identifier{name}.Sanitize()
	db := w.db()
	w.su("CREATE ROLE " + w.roleSQL + " LOGIN" + memberships[w.who])
	w.t.Cleanup(func() {
		ctx := context.Background()
		db.Exec(ctx, "DROP OWNED BY "+w.roleSQL)
		db.Exec(ctx, "DROP ROLE "+w.roleSQL)
	})
	switch w.who {
	case application:
		w.su("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO " + w.roleSQL)
	case tableOwner:
		w.su("GRANT CREATE ON SCHEMA public TO " + w.roleSQL)
	case tenantReader:
		w.su("SELECT audit.add_tenant_reader($1::regrole, 'acme')", name)
	}
	return name
}

// quotedRole returns the case's role name as an SQL identifier.
func (w *world) quotedRole() string {
	w.t.Helper()
	w.roleName()
	return w.roleSQL
}

// roleURL is the database URL of the case's role.
func (w *world) roleURL() string {
	w.t.Helper()
	u, err := url.Parse(w.dbURL())
	if err != nil {
		w.t.Fatal(err)
	}
	u.User = url.User(w.roleName())
	return u.String()
}

// as logs in as the case's role.
func (w *world) as() *pgx.Conn {
	w.t.Helper()
	conn, err := pgx.Connect(context.Background(), w.roleURL())
	if err != nil {
		w.t.Fatalf("connect as %s: %v", w.roleName(), err)
	}
	w.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// tryAs runs sql as the case's role and returns PostgreSQL's answer.
func (w *world) tryAs(sql string, args ...any) error {
	w.t.Helper()
	_, err := w.as().Exec(context.Background(), sql, args...)
	return err
}

// accounts creates the audited table most cases attack, in mode (wal or trigger), with three
// rows, chained.
func (w *world) accounts(mode string) {
	w.t.Helper()
	w.su(`CREATE TABLE accounts (id int PRIMARY KEY, balance int, note text)`)
	w.su(`SELECT audit.enable('accounts', '{}', NULL, $1)`, mode)
	w.su(`INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 3) g`)
	w.chain()
}

// count runs a count query as the superuser.
func (w *world) count(sql string, args ...any) (n int) {
	w.t.Helper()
	if err := w.db().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// keys returns the stream's private key file; its public key is the path+".pub".
func (w *world) keys() string {
	w.t.Helper()
	return w.keyFile("signing.key")
}

// verifierKey returns the key file the verifier signs its checkpoints with.
func (w *world) verifierKey() string {
	w.t.Helper()
	return w.keyFile("verifier.key")
}

// keyFile returns the private key file name in the world's directory, made on first use.
func (w *world) keyFile(name string) string {
	w.t.Helper()
	path := w.path(name)
	if _, err := os.Stat(path); err != nil {
		if _, err := archive.WriteKeyFiles(path); err != nil {
			w.t.Fatal(err)
		}
	}
	return path
}

// archiveDir is the world's file archive, written by stream.
func (w *world) archiveDir() string { return w.path("archive") }

func (w *world) archiveURL() string { return "file://" + w.archiveDir() }

// dbURL returns the superuser's URL of the world's database.
func (w *world) dbURL() string {
	w.t.Helper()
	w.db()
	return w.url
}

// pgtrail runs the binary as the superuser of the world's database.
func (w *world) pgtrail(args ...string) cliRun {
	w.t.Helper()
	return w.run(runOpts{dbURL: w.dbURL()}, args...)
}

// must fails the test unless r exited 0.
func (w *world) must(r cliRun) cliRun {
	w.t.Helper()
	if r.code != 0 {
		w.t.Fatal(r)
	}
	return r
}

// chain runs `pgtrail seal --once` until nothing is pending: everything committed so far is
// chained (audit.pending by the sealer, tables in mode wal from the world's slot, with the
// stream's checks). The sealer leaves what a transaction anywhere in the cluster might still
// precede (another case's, running in parallel): it is run again, for up to 30 seconds.
func (w *world) chain() {
	w.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w.must(w.pgtrail("seal", "--once", "--slot", w.slotName()))
		pending := w.count(`SELECT count(*) FROM audit.pending`)
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d entries still pending after 30 s of pgtrail seal --once", pending)
		}
	}
}

// slotName returns the world's replication slot, creating the database first.
func (w *world) slotName() string {
	w.t.Helper()
	w.db()
	return w.slot
}

// stream runs `pgtrail stream` until everything committed before it started is chained and
// archived, signed with the world's key, in the world's archive.
func (w *world) stream() {
	w.t.Helper()
	w.must(w.pgtrail("stream", "--archive", w.archiveURL(), "--signing-key", w.keys(), "--slot", w.slotName(),
		"--exit-when-caught-up", "--batch-age", "20ms", "--seal-interval", "20ms", "--heartbeat", "0"))
}

// verifyReport is what `pgtrail verify --json` prints.
type verifyReport struct {
	Intact   bool             `json:"intact"`
	Result   string           `json:"result"`
	Problems []verify.Problem `json:"problems"`
	Skipped  []string         `json:"skipped_checkpoints"`
	Error    string           `json:"error"`
}

// verify runs `pgtrail verify scope --json` (all: against the world's archive) with extra args.
func (w *world) verify(scope string, extra ...string) (cliRun, verifyReport) {
	w.t.Helper()
	args := []string{"verify", scope, "--json"}
	if scope != "archive" {
		args = append(args, "--slot", w.slotName())
	}
	if scope != "db" {
		args = append(args, w.archiveURL(), "--public-key", w.keys()+".pub")
	}
	r := w.pgtrail(append(args, extra...)...)
	var rep verifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		w.t.Fatalf("%s: the report does not parse: %v", r, err)
	}
	return r, rep
}

// dataFiles returns the archive's data files (keys relative to it), in key order.
func (w *world) dataFiles() []string {
	w.t.Helper()
	sink, err := archive.Open(context.Background(), w.archiveURL(), archive.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	keys, err := sink.List(context.Background(), archive.EventsPrefix)
	if err != nil || len(keys) == 0 {
		w.t.Fatalf("the archive's data files: %v, %v", keys, err)
	}
	return keys
}

// writeFile writes data at key in the archive directory as someone with write access to it
// does: past the sink, over a read-only file if need be.
func (w *world) writeFile(key string, data []byte) {
	w.t.Helper()
	p := filepath.Join(w.archiveDir(), filepath.FromSlash(key))
	os.Chmod(p, 0o644)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o444); err != nil {
		w.t.Fatal(err)
	}
}

// readFile reads the archive's object at key.
func (w *world) readFile(key string) []byte {
	w.t.Helper()
	data, err := os.ReadFile(filepath.Join(w.archiveDir(), filepath.FromSlash(key)))
	if err != nil {
		w.t.Fatal(err)
	}
	return data
}

// removeDigests deletes the digests of the batch first..last, as someone who may delete in the
// archive directory can.
func (w *world) removeDigests(first, last int64) {
	w.t.Helper()
	dir := filepath.Dir(filepath.Join(w.archiveDir(), filepath.FromSlash(archive.DigestKey(first, last, 0))))
	if _, err := os.Stat(dir); err != nil {
		w.t.Fatalf("digests of batch %d-%d: %v", first, last, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		w.t.Fatal(err)
	}
}

// listing describes every file and directory in the archive: its path, and a file's mode and
// content's hash.
func (w *world) listing() []string {
	w.t.Helper()
	var out []string
	err := filepath.WalkDir(w.archiveDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			out = append(out, p+"/")
			return err
		}
		data, err := os.ReadFile(p)
		out = append(out, fmt.Sprintf("%s %v %x", p, d.Type(), sha256.Sum256(data)))
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// unchanged fails the test unless the archive's listing is before.
func (w *world) unchanged(before []string) {
	w.t.Helper()
	if after := w.listing(); strings.Join(before, "\n") != strings.Join(after, "\n") {
		w.t.Errorf("the archive changed:\nbefore %q\nafter  %q", before, after)
	}
}

// absent fails the test if name exists in the world's directory.
func (w *world) absent(name string) {
	w.t.Helper()
	if _, err := os.Lstat(w.path(name)); err == nil {
		w.t.Errorf("%s was created", name)
	}
}

// bigRules writes a valid rules file of 48 MB: a million rules that each parse.
func (w *world) bigRules() string {
	w.t.Helper()
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := 0; b.Len() < 48<<20; i++ {
		fmt.Fprintf(&b, "  - {name: tampering-%07d, type: tampering, severity: critical}\n", i)
	}
	path := w.path("rules.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// path returns the path of elem in the world's directory.
func (w *world) path(elem ...string) string {
	return filepath.Join(append([]string{w.dir}, elem...)...)
}

// oneLine reports whether s is one line of text.
func oneLine(s string) bool { return !strings.Contains(strings.TrimSpace(s), "\n") }
