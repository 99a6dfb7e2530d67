// Command pgtrail-demo runs pgtrail end to end on a throwaway PostgreSQL (and, when the versitygw
// binary is around, a local S3 server with Object Lock), with the pgtrail CLI a user would type:
// install, audit two tables, run the stream daemon with alert rules while the example payments
// API serves several actors and a brute-force attempt, receive the alert on a local webhook,
// search, export, query the archive, verify the database and both archives, tamper and catch it.
// make demo runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/examples/payments-api/service"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func main() {
	bin := flag.String("pgtrail", "pgtrail", "path of the pgtrail binary to demonstrate (pgtrail-query next to it runs pgtrail query)")
	keep := flag.Bool("keep", false, "keep the demo directory (database, archive) instead of removing it")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	d, err := run(ctx, *bin, *keep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
	d.summary(time.Since(start))
}

// bold: stdout is a terminal (escape codes would litter a pipe or a log).
var bold = func() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}()

func step(format string, args ...any) {
	if bold {
		fmt.Printf("\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
		return
	}
	fmt.Printf("\n==> %s\n", fmt.Sprintf(format, args...))
}

// maxLines is how much of a command's output the demo prints: enough to see what it says, short
// enough to read the whole demo in one screenful per step.
const maxLines = 16

// trimmed returns out with at most n lines, saying how many were left out.
func trimmed(out string, n int) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n") + "\n"
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n  … (%d more lines)\n", len(lines)-n)
}

// demo holds what the steps share.
type demo struct {
	bin string
	env []string
	dir string
	// shown is what the demo showed, one line per part, for the closing summary.
	shown []string
}

func (d *demo) showed(format string, args ...any) {
	d.shown = append(d.shown, fmt.Sprintf(format, args...))
}

// pgtrail runs the CLI and prints the command and its output (stdout and stderr, in order).
// Paths under the demo directory are shown relative to it, as a user in that directory would
// type them.
func (d *demo) pgtrail(ctx context.Context, args ...string) (string, error) {
	return d.pgtrailN(ctx, maxLines, args...)
}

// pgtrailN is pgtrail printing at most n lines of the output.
func (d *demo) pgtrailN(ctx context.Context, n int, args ...string) (string, error) {
	out, err := d.command(ctx, args...).CombinedOutput()
	fmt.Print(d.short("$ pgtrail " + quoteArgs(args) + "\n" + trimmed(string(out), n)))
	if err != nil {
		return string(out), fmt.Errorf("pgtrail %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (d *demo) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = d.env
	cmd.Dir = d.dir
	return cmd
}

// short shows paths in the demo directory relative to it.
func (d *demo) short(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "file://"+d.dir+"/", "file://$PWD/"), d.dir+"/", "")
}

// quoteArgs writes args as a shell would need them.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if strings.ContainsAny(a, " '\"*$;") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

func run(ctx context.Context, bin string, keep bool) (*demo, error) {
	if p, err := exec.LookPath(bin); err == nil {
		bin, _ = filepath.Abs(p)
	}
	dir, err := os.MkdirTemp("", "pgtrail-demo-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as an unprivileged user when we are root: it must reach its directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if keep {
		fmt.Printf("demo directory: %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	step("Starting a throwaway PostgreSQL 15 (wal_level=logical, fsync on)")
	cluster, err := testenv.StartCluster(ctx, filepath.Join(dir, "pg"), nil)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cluster.Close()
	url := cluster.URL("postgres")
	fmt.Println("DATABASE_URL=" + url)
	fmt.Println("(commands below run in the demo directory: $PWD)")
	d := &demo{bin: bin, dir: dir, env: append(os.Environ(), "DATABASE_URL="+url)}
	if err := d.steps(ctx, url); err != nil {
		return nil, err
	}
	step("Done: PostgreSQL, S3 and the demo directory are removed")
	return d, nil
}

func (d *demo) steps(ctx context.Context, url string) error {
	step("Installing the audit schema, creating the demo tables users and payments, auditing them")
	if _, err := d.pgtrail(ctx, "migrate", "up"); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The example service creates its tables and audits them with audit.enable; pgtrail enable
	// then adds what a DBA decides: which columns readers see masked.
	if err := service.Setup(ctx, pool); err != nil {
		return err
	}
	if _, err := d.pgtrail(ctx, "enable", "public.users", "--pii-columns", "email"); err != nil {
		return err
	}
	d.showed("migrate up, enable: two tables audited, users.email masked for pgtrail_reader")

	step("Starting the stream daemon: it chains, archives to file:// with signed digests, and evaluates alert rules")
	key := filepath.Join(d.dir, "signing.key")
	if _, err := d.pgtrail(ctx, "keygen", "--out", key); err != nil {
		return err
	}
	hook := newWebhook()
	defer hook.Close()
	rules := filepath.Join(d.dir, "alerts.yaml")
	rulesYAML := fmt.Sprintf(`webhooks:
  security:
    url: %s/pgtrail
default_webhooks: [security]
rules:
  - name: brute-force      # more than 5 FAILED_LOGIN within 5m for one IP, actor or account tried
    type: brute_force
    threshold: 5
    window: 5m
  - name: tampering
    type: tampering
`, hook.URL)
	if err := os.WriteFile(rules, []byte(rulesYAML), 0o600); err != nil {
		return err
	}
	fmt.Printf("$ cat alerts.yaml   (the webhook is a small HTTP server in this demo)\n%s", rulesYAML)
	fileArchive := "file://" + filepath.Join(d.dir, "archive")
	daemon, err := d.startDaemon(ctx, "stream", "--archive", fileArchive, "--signing-key", key, "--rules", rules)
	if err != nil {
		return err
	}
	defer daemon.stop()

	step("Driving the example payments API: HTTP request → actor in context (auditctx) → audited write; events via audit.log_event")
	lastFailure, err := drive(ctx, pool)
	if err != nil {
		return err
	}
	d.showed("capture with actor context: actor, IP, user agent, request id, tenant on every change")
	d.showed("application events (LOGIN, FAILED_LOGIN, VIEW_PII, EXPORT) recorded by the API with audit.log_event")

	step("The alert: 6 failed logins for bob from 6 addresses → brute-force fires, POSTed to the webhook")
	alert, err := hook.wait(ctx, 30*time.Second)
	if err != nil {
		return fmt.Errorf("%w; daemon log:\n%s", err, daemon.String())
	}
	fmt.Printf("POST %s received %.1fs after the 6th FAILED_LOGIN committed:\n%s",
		hook.URL+"/pgtrail", alert.at.Sub(lastFailure).Seconds(), trimmed(alert.body, 24))
	// The daemon records each alert as an ALERT event too; wait for it to be chained, to search it.
	if err := waitFor(ctx, pool, 15*time.Second, `SELECT count(*) > 0 FROM audit.events WHERE action_type = 'ALERT'`); err != nil {
		return fmt.Errorf("the ALERT event was not recorded: %w", err)
	}
	if _, err := d.pgtrail(ctx, "search", "--action", "FAILED_LOGIN,ALERT", "--newest-first", "--limit", "3"); err != nil {
		return err
	}
	d.showed("an alert firing: brute-force on %s, its webhook body, and the ALERT event in the trail", alert.key)

	step("Operator's view while the daemon runs")
	if _, err := d.pgtrailN(ctx, 30, "status"); err != nil {
		return err
	}
	d.showed("status: no problems, capture per table, chain head, slot")

	step("Investigating: search by actor and by resource (index-backed, in the database)")
	if _, err := d.pgtrail(ctx, "search", "--actor", "alice"); err != nil {
		return err
	}
	// The whole entry of the refund: who, from where, with which request, and the row before and
	// after.
	if _, err := d.pgtrailN(ctx, 60, "search", "--resource", "public.payments:1", "--action", "UPDATE", "--json"); err != nil {
		return err
	}
	d.showed("search by actor (alice), and by resource (public.payments:1) as JSON: the refund with its context and row images")

	step("A compliance export, itself recorded as an EXPORT event")
	report := filepath.Join(d.dir, "report-alice.csv")
	if _, err := d.pgtrail(ctx, "export", "--out", report, "--actor", "alice", "--requested-by", "legal", "--reason", "ticket 1234"); err != nil {
		return err
	}
	csv, err := os.ReadFile(report)
	if err != nil {
		return err
	}
	fmt.Printf("$ head -3 report-alice.csv | cut -c1-150\n")
	for _, l := range strings.SplitN(string(csv), "\n", 4)[:3] {
		fmt.Println(l[:min(len(l), 150)])
	}
	// seal --once returns once the running daemon has chained the EXPORT event.
	if _, err := d.pgtrail(ctx, "seal", "--once"); err != nil {
		return err
	}
	if _, err := d.pgtrail(ctx, "search", "--action", "EXPORT", "--actor", "legal"); err != nil {
		return err
	}
	d.showed("export: report-alice.csv, and its EXPORT event (actor legal) found by search")

	step("Stopping the daemon (SIGTERM: it archives what it holds, then exits)")
	if err := daemon.stop(); err != nil {
		return err
	}
	fmt.Println("$ tail stream.log")
	fmt.Print(d.short(trimmed(daemon.log(), 12)))
	if err := d.listArchive(filepath.Join(d.dir, "archive")); err != nil {
		return err
	}

	step("Ad-hoc SQL over the Parquet archive with DuckDB (pgtrail-query), table events")
	if _, err := d.pgtrail(ctx, "query", fileArchive,
		"SELECT tenant, action_type, count(*) AS n, min(seq) AS first_seq FROM events GROUP BY ALL ORDER BY first_seq"); err != nil {
		return err
	}
	d.showed("query over the file archive with DuckDB")

	step("Verifying the chain in the database, then the archive (hashes, signed digests) against it")
	if _, err := d.pgtrail(ctx, "verify", "db"); err != nil {
		return err
	}
	if _, err := d.pgtrail(ctx, "verify", "all", fileArchive, "--public-key", key+".pub"); err != nil {
		return err
	}
	d.showed("verify db, and verify all of the file archive: intact")

	if err := d.s3(ctx, key); err != nil {
		return err
	}

	step("Tampering as a superuser with the guard triggers off, then verifying again")
	const tamper = `BEGIN; SET LOCAL session_replication_role = replica;
UPDATE audit.events SET actor_id = 'nobody' WHERE seq = 10; COMMIT`
	fmt.Printf("as the superuser, in SQL:\n%s\n", tamper)
	if _, err := pool.Exec(ctx, tamper); err != nil {
		return err
	}
	_, err = d.pgtrail(ctx, "verify", "all", fileArchive, "--public-key", key+".pub")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		return fmt.Errorf("verify after tampering: %v; want exit code 1 (tampering found)", err)
	}
	fmt.Println("(exit code 1: tampering found, as expected)")
	d.showed("tampering with seq 10 by a superuser: found by verify (exit 1)")
	return nil
}

// s3 streams the trail into a local S3 server with Object Lock and verifies it there, when the
// versitygw binary is available.
func (d *demo) s3(ctx context.Context, key string) error {
	if _, err := exec.LookPath(os.Getenv(testenv.EnvVersityGW)); err != nil && os.Getenv(testenv.EnvVersityGW) == "" {
		fmt.Println("\n(no versitygw binary: skipping the S3 part; run make tools to build it)")
		d.showed("S3: skipped (no versitygw; make tools builds it)")
		return nil
	}
	step("Streaming into a local S3 server (versitygw) with Object Lock: COMPLIANCE, each object locked for 1 minute")
	srv, err := testenv.StartS3(ctx, filepath.Join(d.dir, "s3"))
	if err != nil {
		fmt.Printf("(S3 server did not start: %v; skipping the S3 part)\n", err)
		d.showed("S3: skipped (the server did not start)")
		return nil
	}
	defer srv.Close()
	s3 := &demo{bin: d.bin, dir: d.dir, env: append(d.env,
		"AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)}
	target := "s3://pgtrail-demo/trail"
	if _, err := s3.pgtrail(ctx, "archive", "init", target, "--s3-endpoint", srv.Endpoint, "--retention", "1d", "--glacier-after", "0"); err != nil {
		return err
	}
	if _, err := s3.pgtrailN(ctx, 8, "stream", "--archive", target, "--s3-endpoint", srv.Endpoint, "--retention", "1m",
		"--signing-key", key, "--slot", "pgtrail_s3", "--exit-when-caught-up"); err != nil {
		return err
	}
	if _, err := s3.pgtrail(ctx, "verify", "archive", target, "--s3-endpoint", srv.Endpoint, "--public-key", key+".pub"); err != nil {
		return err
	}
	d.showed("S3 with Object Lock: archive init, stream, verify archive: intact")
	return nil
}

// listArchive prints the file archive's layout: Hive partitions, one digest per data file.
func (d *demo) listArchive(dir string) error {
	fmt.Printf("$ find archive -type f\n")
	return filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fmt.Println(d.short(path))
		return nil
	})
}

// drive plays a few users against the API, then a password-guessing run against bob's account from
// several addresses, and returns when the last failed login was answered.
func drive(ctx context.Context, pool *pgxpool.Pool) (lastFailure time.Time, err error) {
	// The demo client comes from 127.0.0.1 like a reverse proxy would: the API believes its
	// X-Forwarded-For, so each actor is recorded with an address of its own.
	h, err := service.New(service.Config{Pool: pool, TrustedProxies: []string{"127.0.0.1"}})
	if err != nil {
		return lastFailure, err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	type call struct{ method, path, token, ip, agent, body, note string }
	calls := []call{
		{"POST", "/login", "", "203.0.113.7", "Mozilla/5.0 (demo)", `{"user":"alice","password":"alice-password"}`, "alice logs in"},
		{"POST", "/users", "alice-token", "203.0.113.7", "Mozilla/5.0 (demo)", `{"name":"Carol","email":"carol@example.com"}`, ""},
		{"POST", "/payments", "alice-token", "203.0.113.7", "Mozilla/5.0 (demo)", `{"user_id":1,"amount_cents":1250,"currency":"EUR"}`, ""},
		{"POST", "/payments/1/refund", "alice-token", "203.0.113.7", "Mozilla/5.0 (demo)", ``, ""},
		{"GET", "/users/1", "alice-token", "203.0.113.7", "Mozilla/5.0 (demo)", ``, "VIEW_PII"},
		{"GET", "/payments/export", "alice-token", "203.0.113.7", "curl/8.5", ``, "EXPORT"},
		{"POST", "/login", "", "198.51.100.23", "curl/8.5", `{"user":"bob","password":"bob-password"}`, "bob logs in"},
		{"POST", "/users", "bob-token", "198.51.100.23", "curl/8.5", `{"name":"Dave","email":"dave@example.org"}`, ""},
		{"POST", "/payments", "bob-token", "198.51.100.23", "curl/8.5", `{"user_id":2,"amount_cents":999,"currency":"USD"}`, ""},
	}
	for i := range 6 {
		calls = append(calls, call{"POST", "/login", "", fmt.Sprintf("192.0.2.%d", 10+i), "python-requests/2.31",
			fmt.Sprintf(`{"user":"bob","password":"guess-%d"}`, i), "FAILED_LOGIN"})
	}
	for i, c := range calls {
		req, err := http.NewRequestWithContext(ctx, c.method, srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			return lastFailure, err
		}
		req.Header.Set("User-Agent", c.agent)
		req.Header.Set("X-Request-Id", fmt.Sprintf("demo-%02d", i+1))
		req.Header.Set("X-Forwarded-For", c.ip)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return lastFailure, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			lastFailure = time.Now()
		}
		as := strings.TrimSuffix(c.token, "-token")
		if as == "" {
			as = "-"
		}
		fmt.Printf("%-4s %-19s as %-5s from %-13s → %d %s\n", c.method, c.path, as, c.ip, resp.StatusCode, c.note)
	}
	return lastFailure, nil
}

// waitFor polls a boolean query until it is true, for at most timeout.
func waitFor(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration, query string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var ok bool
		if err := pool.QueryRow(ctx, query).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not true after %s: %s", timeout, query)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// webhook is the demo's alert receiver: what a chat or paging service would get.
type webhook struct {
	*httptest.Server
	alerts chan received
}

type received struct {
	at   time.Time
	key  string
	body string // indented JSON
}

func newWebhook() *webhook {
	w := &webhook{alerts: make(chan received, 16)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var a struct{ Key string }
		json.Unmarshal(body, &a)
		select {
		case w.alerts <- received{at: time.Now(), key: a.Key, body: alertBody(body)}:
		default: // the demo reads the first alert only
		}
	}))
	return w
}

// alertBody formats a webhook body for reading: indented, each of its events on one line, the
// first two of them only.
func alertBody(body []byte) string {
	var m map[string]json.RawMessage
	var events []json.RawMessage
	if json.Unmarshal(body, &m) != nil || json.Unmarshal(m["events"], &events) != nil {
		return string(body) + "\n"
	}
	delete(m, "events")
	top, _ := json.MarshalIndent(m, "  ", "  ")
	var b strings.Builder
	b.WriteString("  " + strings.TrimSuffix(string(top), "\n  }"))
	fmt.Fprintf(&b, ",\n    \"events\": [   (%d events, the first two shown)\n", len(events))
	for _, ev := range events[:min(2, len(events))] {
		var c bytes.Buffer
		json.Compact(&c, ev)
		fmt.Fprintf(&b, "      %s,\n", c.String())
	}
	b.WriteString("      …\n    ]\n  }\n")
	return b.String()
}

// wait returns the first alert received, or an error after timeout.
func (w *webhook) wait(ctx context.Context, timeout time.Duration) (received, error) {
	select {
	case a := <-w.alerts:
		return a, nil
	case <-time.After(timeout):
		return received{}, fmt.Errorf("no alert reached the webhook within %s", timeout)
	case <-ctx.Done():
		return received{}, ctx.Err()
	}
}

// daemonProc is pgtrail stream running in the background, its log collected.
type daemonProc struct {
	cmd     *exec.Cmd
	logFile string        // its stdout and stderr, as with > stream.log 2>&1
	done    chan struct{} // closed when the process has exited; waitErr is then set
	waitErr error
	once    sync.Once
	err     error
}

// String returns what the daemon has logged so far.
func (p *daemonProc) String() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// startDaemon starts pgtrail with args and returns once its log says it streams. It is bounded:
// not streaming within 30 s is an error, and after 3 minutes it is stopped whatever happens.
func (d *demo) startDaemon(ctx context.Context, args ...string) (*daemonProc, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	p := &daemonProc{cmd: d.command(ctx, args...), logFile: filepath.Join(d.dir, "stream.log")}
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 30 * time.Second
	log, err := os.Create(p.logFile)
	if err != nil {
		cancel()
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	p.cmd.Stdout, p.cmd.Stderr = log, log
	fmt.Print(d.short("$ pgtrail " + quoteArgs(args) + " > stream.log 2>&1 &\n"))
	if err := p.cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p.done = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.String(), "msg=streaming") {
		select {
		case <-p.done:
		case <-deadline:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		p.stop()
		return nil, fmt.Errorf("pgtrail %s did not start streaming within 30s:\n%s", strings.Join(args, " "), p.String())
	}
	fmt.Println("$ cat stream.log")
	fmt.Print(d.short(p.String()))
	return p, nil
}

// stop sends SIGTERM and waits for the daemon to exit; it is safe to call twice.
func (p *daemonProc) stop() error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM) // an error: it has exited already
		select {
		case <-p.done:
		case <-time.After(45 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			p.err = errors.New("pgtrail stream did not exit within 45s of SIGTERM")
			return
		}
		if p.waitErr != nil {
			p.err = fmt.Errorf("pgtrail stream: %w:\n%s", p.waitErr, p.String())
		}
	})
	return p.err
}

// log returns the lines the daemon logged after it started streaming.
func (p *daemonProc) log() string {
	out := p.String()
	if i := strings.Index(out, "msg=streaming"); i >= 0 {
		if j := strings.IndexByte(out[i:], '\n'); j >= 0 {
			return out[i+j+1:]
		}
	}
	return out
}

// summary lists what the demo showed.
func (d *demo) summary(took time.Duration) {
	step("What this demo showed (in %.0fs)", took.Seconds())
	for _, s := range d.shown {
		fmt.Println("  - " + s)
	}
}
