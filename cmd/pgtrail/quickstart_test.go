package main

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archivetest"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// TestQuickstart runs docs/quickstart.md as a DBA would, so that the page cannot drift from what
// works: on a throwaway cluster holding an "existing database" (an application role and two
// tables with rows), it runs the page's shell blocks in order and requires each to exit 0, then
// checks that the application's change is in the trail with its actor context, sealed, archived
// and verified.
//
// What the page's markers mean (an HTML comment on the line before a ```sh fence):
//
//   - no marker: the block runs in the foreground with bash -euo pipefail, in a temporary
//     directory, for at most a minute;
//   - <!-- quickstart-test: skip (REASON) -->: the block is not run (a server restart, systemctl,
//     kubectl); the reason is required, and logged;
//   - <!-- quickstart-test: background (...) -->: a long-running command (pgtrail stream): it runs
//     in the background while the later blocks run, must log "msg=streaming" within 30 s, and at
//     the end gets SIGTERM and must exit 0.
//
// Blocks fenced otherwise (sql, go, ini, yaml) are illustrations and are not run; the Go side is
// tested in package auditctx, and the SQL of section 5 runs here through psql.
//
// Substitutions, so that the page can show production values: an `export NAME=...` line for one
// of the variables in vars sets the test's value instead (URLs of the throwaway cluster, with the
// role the page names; a file:// archive for PGTRAIL_ARCHIVE, which would be s3:// in production);
// /etc/pgtrail and /var/lib/pgtrail are directories of the test. Variables exported by a block stay
// exported in the blocks after it, as in one shell session.
func TestQuickstart(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql (the PostgreSQL client the page uses) is not on PATH")
	}
	blocks := quickstartBlocks(t, "../../docs/quickstart.md")

	cluster := testenv.StartPostgres(t, nil)
	admin := testdb.Pool(t, cluster.URL("postgres"))
	testdb.Exec(t, admin, `CREATE DATABASE app`)
	dbURL := cluster.URL("app")
	db := testdb.Pool(t, dbURL)
	// The existing database: the application's role owns nothing of pgtrail and is granted nothing.
	testdb.Exec(t, db, `CREATE ROLE app LOGIN;
		CREATE TABLE users (id int PRIMARY KEY, email text, phone text, password_hash text);
		CREATE TABLE payments (id int PRIMARY KEY, user_id int REFERENCES users, amount_cents bigint);
		GRANT SELECT, INSERT, UPDATE, DELETE ON users, payments TO app;
		INSERT INTO users VALUES (1, 'alice@example.com', '+1 555 0100', 'h1');
		INSERT INTO payments VALUES (1, 1, 1250)`)

	root := t.TempDir()
	for _, d := range []string{"etc/pgtrail", "var/lib/pgtrail", "work"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	archiveURL := "file://" + filepath.Join(root, "var/lib/pgtrail/archive")
	vars := map[string]string{
		"DATABASE_URL":        dbURL,
		"STREAM_DATABASE_URL": withRole(t, dbURL, "pgtrail_stream"),
		"VERIFY_DATABASE_URL": withRole(t, dbURL, "pgtrail_verify"),
		"APP_DATABASE_URL":    withRole(t, dbURL, "app"),
		"PGTRAIL_ARCHIVE":     archiveURL,
	}
	env := []string{"PATH=" + filepath.Dir(binary(t)) + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + root}

	var prelude strings.Builder // the exports of the blocks run so far
	var bg *exec.Cmd
	var bgOut *lockedBuffer
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("quickstart.md:%d: not run: %s", b.line, b.skip)
			continue
		}
		script := quickstartScript(b.text, root, vars)
		if b.background {
			if bg != nil {
				t.Fatalf("quickstart.md:%d: a second background block; the test runs one", b.line)
			}
			bg, bgOut = shellCommand(t, 2*time.Minute, env, root, prelude.String()+"exec "+strings.TrimSpace(script))
			if err := bg.Start(); err != nil {
				t.Fatal(err)
			}
			waitLogged(t, bgOut, "msg=streaming", 30*time.Second)
		} else {
			cmd, out := shellCommand(t, time.Minute, env, root, prelude.String()+script)
			if err := cmd.Run(); err != nil {
				t.Fatalf("quickstart.md:%d: %v\n--- block:\n%s\n--- output:\n%s", b.line, err, b.text, out.String())
			}
			t.Logf("quickstart.md:%d: ok\n%s", b.line, out.String())
		}
		for _, l := range strings.Split(script, "\n") {
			if strings.HasPrefix(l, "export ") {
				prelude.WriteString(l + "\n")
			}
		}
	}
	if bg == nil {
		t.Fatal("quickstart.md runs no daemon (no background block): the trail would never be chained")
	}
	// The page's last commands recorded entries (the VERIFY run) that the daemon may not have
	// chained yet: seal --once returns once the running daemon has chained them.
	if code, out, errOut := runCLI(t, map[string]string{"DATABASE_URL": dbURL}, "seal", "--once"); code != 0 {
		t.Fatalf("seal --once: exit %d\n%s%s", code, out, errOut)
	}
	bg.Process.Signal(syscall.SIGTERM)
	if err := bg.Wait(); err != nil {
		t.Fatalf("the page's pgtrail stream after SIGTERM: %v\n%s", err, bgOut.String())
	}

	// The application's change and event carry its context, are chained, and the page's nightly
	// command verified them (its VERIFY event); the archive holds them and verifies now, whole.
	var seqs []int64
	rows, err := db.Query(context.Background(), `SELECT seq FROM audit.events
		WHERE actor_id = 'alice' AND host(actor_ip) = '203.0.113.7' AND request_id = 'req-42' AND tenant_id = 'acme'
		  AND ((action_type = 'UPDATE' AND resource_type = 'public.users' AND resource_id = '1') OR action_type = 'VIEW_PII')
		ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	if rows.Err() != nil || len(seqs) != 2 {
		t.Fatalf("alice's UPDATE and VIEW_PII with their context: seqs %v (%v), want 2 entries", seqs, rows.Err())
	}
	var verified bool
	if err := db.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM audit.events WHERE action_type = 'VERIFY' AND outcome = 'SUCCESS'
		AND db_user = 'pgtrail_verify' AND seq > $1)`, seqs[1]).Scan(&verified); err != nil || !verified {
		var all string
		db.QueryRow(context.Background(), `SELECT string_agg(format('%s %s %s %s', seq, action_type, outcome, db_user), '; ') FROM audit.events`).Scan(&all)
		t.Errorf("no successful VERIFY run by pgtrail_verify after the application's entries (%v): %s", err, all)
	}
	sink, err := archive.Open(context.Background(), archiveURL, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	archived := map[int64]bool{}
	for _, e := range archivetest.Events(t, sink) {
		archived[e.Seq] = true
	}
	if !archived[seqs[0]] || !archived[seqs[1]] {
		t.Errorf("the archive lacks alice's entries %v (it holds %d entries)", seqs, len(archived))
	}
	code, out, errOut := runCLI(t, map[string]string{"DATABASE_URL": dbURL}, "verify", "all", archiveURL,
		"--public-key", filepath.Join(root, "etc/pgtrail/signing.key.pub"))
	if code != 0 || !strings.HasPrefix(out, "intact:") {
		t.Errorf("verify all at the end: exit %d\n%s%s", code, out, errOut)
	}
}

// quickstartBlock is a ```sh block of the page.
type quickstartBlock struct {
	line       int // of the fence
	text       string
	skip       string // the reason it is not run
	background bool
}

var quickstartMarker = regexp.MustCompile(`^<!-- quickstart-test: (skip|background) \((.+)\) -->$`)

// quickstartBlocks returns the page's ```sh blocks with their markers; a marker on any other line
// than right before a ```sh fence fails the test, so that a marker cannot be lost by an edit.
func quickstartBlocks(t *testing.T, path string) []quickstartBlock {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	var blocks []quickstartBlock
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.Contains(l, "quickstart-test:") {
			m := quickstartMarker.FindStringSubmatch(l)
			if m == nil || i+1 == len(lines) || strings.TrimSpace(lines[i+1]) != "```sh" {
				t.Fatalf("%s:%d: a marker is <!-- quickstart-test: skip|background (why) --> right before a ```sh fence", path, i+1)
			}
			continue
		}
		if !strings.HasPrefix(l, "```") || l == "```" {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		if l != "```sh" {
			continue
		}
		b := quickstartBlock{line: start + 1, text: strings.Join(body, "\n") + "\n"}
		if start > 0 {
			if m := quickstartMarker.FindStringSubmatch(strings.TrimSpace(lines[start-1])); m != nil {
				b.background = m[1] == "background"
				if m[1] == "skip" {
					b.skip = m[2]
				}
			}
		}
		blocks = append(blocks, b)
	}
	if len(blocks) < 5 {
		t.Fatalf("%s: %d sh blocks found; the extraction is broken", path, len(blocks))
	}
	return blocks
}

var exportLine = regexp.MustCompile(`(?m)^export ([A-Z_]+)=.*$`)

// quickstartScript applies the substitutions of TestQuickstart to a block.
func quickstartScript(text, root string, vars map[string]string) string {
	text = strings.ReplaceAll(text, "/etc/pgtrail/", filepath.Join(root, "etc/pgtrail")+"/")
	text = strings.ReplaceAll(text, "/var/lib/pgtrail/", filepath.Join(root, "var/lib/pgtrail")+"/")
	return exportLine.ReplaceAllStringFunc(text, func(l string) string {
		name := exportLine.FindStringSubmatch(l)[1]
		if v, ok := vars[name]; ok {
			return "export " + name + "='" + v + "'"
		}
		return l
	})
}

// withRole returns u with the user changed to role (the throwaway cluster trusts local
// connections, so the page's passwords are not checked).
func withRole(t *testing.T, u, role string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.User = url.UserPassword(role, "change-me")
	return p.String()
}

// shellCommand returns bash running script in dir/work, its output collected. After timeout it
// gets SIGTERM, then SIGKILL 10 s later, so that no block can hold the test up.
func shellCommand(t *testing.T, timeout time.Duration, env []string, dir, script string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = env
	cmd.Dir = filepath.Join(dir, "work")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// waitLogged waits until out holds want, for at most timeout.
func waitLogged(t *testing.T, out *lockedBuffer, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(out.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s:\n%s", want, timeout, out.String())
		}
	}
}
