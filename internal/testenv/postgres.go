package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDatabaseURL names the environment variable that points Postgres at an existing server instead of
// the throwaway cluster. Its value is a superuser connection string (URL or keyword/value form).
const EnvDatabaseURL = "PGTRAIL_TEST_DATABASE_URL"

const (
	readyTimeout = 60 * time.Second
	readyPoll    = 50 * time.Millisecond
	stopTimeout  = 60 * time.Second
	// setupTimeout bounds the test helpers' own server work (initdb, start, CREATE DATABASE).
	setupTimeout = 2 * time.Minute
	// startAttempts covers the race between picking a free port and the server binding it.
	startAttempts = 3
)

// baseSettings are what pgtrail needs from any cluster: logical decoding, room for replication slots
// and parallel tests, and no network exposure.
var baseSettings = map[string]string{
	"wal_level":             "logical",
	"max_replication_slots": "20",
	"max_wal_senders":       "20",
	"listen_addresses":      "127.0.0.1",
	"max_connections":       "200",
	"shared_buffers":        "128MB",
}

// testSettings trade durability for speed; only throwaway test clusters get them.
var testSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Cluster is a PostgreSQL 15 server run from the binaries on PATH, or, under EnvDatabaseURL, an
// external server this package does not manage. Its methods are safe for concurrent use.
type Cluster struct {
	// external is the connection string of a server we do not manage; empty for our own clusters.
	external string

	dir      string // holds data/, the unix socket and postgres.log
	dataDir  string
	owned    bool // dir was created by us and is removed on Close
	shared   bool // the per-binary cluster behind Postgres; Stop restarts it at test cleanup
	port     int
	cred     *syscall.Credential
	postgres string // absolute path of the postgres binary

	mu     sync.Mutex
	proc   *process
	reaper *reaper
	closed bool
}

// Postgres returns a connection URL (postgres://...) to a fresh, empty database on a shared throwaway
// PostgreSQL 15 cluster; the database is dropped at test cleanup. The connection is a superuser's.
// When EnvDatabaseURL is set, the database is created on that server instead.
func Postgres(t testing.TB) string {
	t.Helper()
	c := PostgresCluster(t)
	name := databaseName(t.Name())

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := c.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		// FORCE: a test may leave connections or a replication client behind.
		if err := c.adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return c.URL(name)
}

var shared struct {
	mu      sync.Mutex
	cluster *Cluster
	err     error // a failed start is not retried: every later test would wait for it again
}

// PostgresCluster returns the cluster shared by all tests of the binary, started on first use with
// fsync, synchronous_commit and full_page_writes off. It is stopped and its directory removed when the
// binary exits (see RunMain). Tests that Stop or Restart it must not run in parallel with tests that use
// it. When EnvDatabaseURL is set, it returns that server, whose Stop, Start and Restart skip the test.
func PostgresCluster(t testing.TB) *Cluster {
	t.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return &Cluster{external: u}
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		c, err := StartCluster(ctx, "", testSettings)
		if err != nil {
			shared.err = err
		} else {
			c.shared = true
			shared.cluster = c
		}
	}
	if shared.err != nil {
		t.Fatalf("testenv: start shared PostgreSQL cluster: %v", shared.err)
	}
	return shared.cluster
}

// StartPostgres starts a dedicated cluster, not shared with other tests, with extra postgresql.conf
// settings such as {"wal_level": "replica"}. Like the shared cluster it runs with fsync,
// synchronous_commit and full_page_writes off unless settings say otherwise. It is stopped and its
// directory removed at test cleanup.
func StartPostgres(t testing.TB, settings map[string]string) *Cluster {
	t.Helper()
	merged := maps.Clone(testSettings)
	maps.Copy(merged, settings)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := StartCluster(ctx, "", merged)
	if err != nil {
		t.Fatalf("testenv: start PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("testenv: close PostgreSQL cluster: %v", err)
		}
	})
	return c
}

// StartCluster starts a PostgreSQL cluster for use outside tests (make demo, make bench) and returns
// once it accepts connections. The cluster lives in dir: dir/data is the data directory (initialized
// unless it already holds one), dir/postgres.log the server log, and dir the unix socket directory, so
// keep dir short. An empty dir means a new temporary directory, removed by Close.
//
// settings are written to postgresql.conf and override the defaults: wal_level=logical,
// max_replication_slots=20, max_wal_senders=20, listen_addresses=127.0.0.1, max_connections=200,
// shared_buffers=128MB. fsync stays on unless settings turn it off. A "port" setting picks the port;
// otherwise a free one is chosen.
//
// The server stops when the calling process exits, even if Close is never called: it is started with
// a parent-death signal, and a watchdog process stops it (and removes a temporary dir) once the
// caller is gone. Running as root, the server runs as the "postgres" OS user.
func StartCluster(ctx context.Context, dir string, settings map[string]string) (*Cluster, error) {
	c := &Cluster{}
	var err error
	if c.postgres, err = exec.LookPath("postgres"); err != nil {
		return nil, fmt.Errorf("find PostgreSQL 15 server binaries on PATH: %w", err)
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return nil, fmt.Errorf("find PostgreSQL 15 server binaries on PATH: %w", err)
	}
	if c.cred, err = postgresCredential(); err != nil {
		return nil, err
	}
	if dir == "" {
		// Not t.TempDir: its parents may be 0700 root, which the postgres user cannot traverse.
		if dir, err = os.MkdirTemp(os.TempDir(), "pgtrail-pg-"); err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
		c.owned = true
	} else {
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("resolve cluster dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
	}
	c.dir = dir
	c.dataDir = filepath.Join(dir, "data")

	if err := c.setup(ctx, initdb, settings); err != nil {
		c.removeOwned()
		return nil, err
	}
	if c.reaper, err = startReaper(c.ownedDir(), c.pidFile(), c.dataDir, "INT"); err != nil {
		c.removeOwned()
		return nil, err
	}

	pickPort := c.port == 0
	for attempt := 1; ; attempt++ {
		if pickPort {
			if c.port, err = freePort(); err != nil {
				break
			}
		}
		c.mu.Lock()
		err = c.startLocked(ctx)
		c.mu.Unlock()
		var exited *exitedError
		if err == nil || !pickPort || attempt == startAttempts || !errors.As(err, &exited) {
			break
		}
	}
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// setup initializes the data directory if needed and writes the settings file.
func (c *Cluster) setup(ctx context.Context, initdb string, settings map[string]string) error {
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("hand cluster dir to the postgres user: %w", err)
		}
	}
	merged := maps.Clone(baseSettings)
	merged["unix_socket_directories"] = c.dir
	for k, v := range settings {
		if !settingName.MatchString(k) {
			return fmt.Errorf("invalid setting name %q", k)
		}
		merged[k] = v
	}
	if p, ok := merged["port"]; ok {
		port, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("invalid port setting %q: %w", p, err)
		}
		c.port = port
		// Passed as -p so that a retry on another port need not rewrite the file.
		delete(merged, "port")
	}

	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		args := []string{"-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
		if merged["fsync"] == "off" {
			args = append(args, "--no-sync")
		}
		cmd := exec.CommandContext(ctx, initdb, args...)
		c.prepare(cmd)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, out)
		}
	} else if err != nil {
		return fmt.Errorf("inspect data dir: %w", err)
	}

	// Settings live in an included file so that a reused data dir gets them replaced, not appended.
	const include = "include_if_exists = 'pgtrail.conf'\n"
	conf := filepath.Join(c.dataDir, "postgresql.conf")
	body, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	if !bytes.Contains(body, []byte(include)) {
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open postgresql.conf: %w", err)
		}
		_, err = io.WriteString(f, "\n"+include)
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("append to postgresql.conf: %w", err)
		}
	}
	var b strings.Builder
	b.WriteString("# Written by pgtrail testenv; replaced on every start.\n")
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(merged[k], "'", "''"))
	}
	if err := os.WriteFile(filepath.Join(c.dataDir, "pgtrail.conf"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write pgtrail.conf: %w", err)
	}
	return nil
}

// URL returns a superuser connection URL for the database dbname.
func (c *Cluster) URL(dbname string) string {
	if c.external != "" {
		return withDatabase(c.external, dbname)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(dbname))
}

// Restart stops the server with a fast shutdown (as pg_ctl restart -m fast) and starts it again on the
// same port and data directory, returning once it accepts connections. Existing connections break,
// which is what reconnect tests want.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.skipExternal(t, "Restart")
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stopLocked(); err != nil {
		t.Fatalf("testenv: restart PostgreSQL: %v", err)
	}
	if err := c.startLocked(ctx); err != nil {
		t.Fatalf("testenv: restart PostgreSQL: %v", err)
	}
}

// Stop shuts the server down (fast shutdown); a second Stop does nothing. The shared cluster is started
// again at the end of the test if the test left it stopped, so later tests still find it.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.skipExternal(t, "Stop")
	c.mu.Lock()
	err := c.stopLocked()
	c.mu.Unlock()
	if err != nil {
		t.Fatalf("testenv: stop PostgreSQL: %v", err)
	}
	if c.shared {
		t.Cleanup(func() { c.Start(t) })
	}
}

// Start starts a stopped server again on the same port and data directory and returns once it accepts
// connections; on a running server it does nothing.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.skipExternal(t, "Start")
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startLocked(ctx); err != nil {
		t.Fatalf("testenv: start PostgreSQL: %v", err)
	}
}

// Close stops the server and removes its directory if StartCluster created it. Closing twice is a
// no-op; Close on an external server does nothing.
func (c *Cluster) Close() error {
	if c.external != "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.stopLocked()
	if c.reaper != nil {
		// The watchdog finds the server gone and removes an owned dir; waiting for it keeps Close
		// synchronous.
		err = errors.Join(err, c.reaper.close())
	}
	if c.owned {
		if rerr := os.RemoveAll(c.dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove cluster dir: %w", rerr))
		}
	}
	return err
}

func (c *Cluster) skipExternal(t testing.TB, op string) {
	t.Helper()
	if c.external != "" {
		t.Skipf("testenv: %s needs the throwaway cluster, but %s points at an external server", op, EnvDatabaseURL)
	}
}

func (c *Cluster) startLocked(ctx context.Context) error {
	if c.closed {
		return errors.New("cluster is closed")
	}
	if c.proc != nil && !c.proc.exited() {
		return nil
	}
	logFile, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()

	// The postmaster itself, not pg_ctl: only a direct child can carry the parent-death signal.
	cmd := exec.Command(c.postgres, "-D", c.dataDir, "-p", strconv.Itoa(c.port))
	c.prepare(cmd)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// SIGINT is a fast shutdown: it does not wait for clients that may never disconnect.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	p, err := startProcess(cmd, c.pidFile())
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc = p
	if err := c.waitReady(ctx); err != nil {
		return errors.Join(err, p.stop(syscall.SIGQUIT, stopTimeout))
	}
	return nil
}

func (c *Cluster) stopLocked() error {
	if c.proc == nil {
		return nil
	}
	err := c.proc.stop(syscall.SIGINT, stopTimeout)
	c.proc = nil
	_ = os.Remove(c.pidFile())
	return err
}

// waitReady polls until the server accepts a connection, it exits, or the deadline passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attemptCtx, c.URL("postgres"))
		attemptCancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.proc.done:
			return &exitedError{what: "postgres", err: c.proc.err, log: logTail(filepath.Join(c.dir, "postgres.log"))}
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres on port %d: %w (last error: %v)\n%s", c.port, ctx.Err(), err, logTail(filepath.Join(c.dir, "postgres.log")))
		case <-tick.C:
		}
	}
}

// adminExec runs one statement as the superuser: on the postgres database of our clusters, on the
// given database of an external server (which may grant no access to the postgres database).
func (c *Cluster) adminExec(ctx context.Context, sql string) error {
	admin := c.external
	if admin == "" {
		admin = c.URL("postgres")
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	_, err = conn.Exec(ctx, sql)
	return errors.Join(err, conn.Close(ctx))
}

// prepare sets what every PostgreSQL command needs: its own process group, the postgres user when we
// are root, a working directory that user can read, and no PG* variables that could redirect it.
func (c *Cluster) prepare(cmd *exec.Cmd) {
	cmd.Dir = c.dir
	cmd.Env = filterEnv(os.Environ(), "PG")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
}

func (c *Cluster) pidFile() string { return filepath.Join(c.dir, "server.pid") }

func (c *Cluster) ownedDir() string {
	if c.owned {
		return c.dir
	}
	return ""
}

func (c *Cluster) removeOwned() {
	if c.owned {
		_ = os.RemoveAll(c.dir)
	}
}

// postgresCredential returns the credential to run PostgreSQL with: nil unless we are root, which
// PostgreSQL refuses to run as.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("look up the postgres OS user (PostgreSQL refuses to run as root): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of postgres user: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// withDatabase replaces the database of a connection string in URL or keyword/value form.
func withDatabase(conn, dbname string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		if u, err := url.Parse(conn); err == nil {
			u.Path = "/" + dbname
			u.RawPath = ""
			return u.String()
		}
	}
	// In keyword/value form the last occurrence of a keyword wins.
	return conn + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(dbname) + "'"
}

// databaseName derives a database name from a test name: recognizable in pg_stat_activity, unique
// across runs and parallel tests, and within PostgreSQL's 63-byte identifier limit.
func databaseName(testName string) string {
	return "t_" + sanitizeName(testName, '_', 63-len("t_")-len("_")-8) + "_" + randomHex(4)
}

// sanitizeName lowercases s, replaces every run of characters other than [a-z0-9] with sep, and cuts
// the result to at most limit bytes without a leading or trailing sep.
func sanitizeName(s string, sep byte, limit int) string {
	var b strings.Builder
	pending := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if pending && b.Len() > 0 {
				b.WriteByte(sep)
			}
			pending = false
			b.WriteRune(r)
			continue
		}
		pending = true
	}
	out := b.String()
	if len(out) > limit {
		out = strings.TrimRight(out[:limit], string(sep))
	}
	if out == "" {
		out = "x"
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

func filterEnv(env []string, prefixes ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// logTail returns the end of a server log for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const limit = 4096
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return fmt.Sprintf("--- %s ---\n%s", path, b)
}

// exitedError reports a server that exited before it became ready, typically because another process
// took its port between freePort and bind.
type exitedError struct {
	what string
	err  error
	log  string
}

func (e *exitedError) Error() string {
	return fmt.Sprintf("%s exited before accepting connections: %v\n%s", e.what, e.err, e.log)
}

// --- Process supervision shared by the PostgreSQL and S3 servers. ---

// process is a server started as our child.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // Wait's result; read only after done is closed
}

// startProcess starts cmd on the spawner thread (so that its Pdeathsig holds for the life of the
// process, see spawn) and records its pid in pidFile for the watchdog.
func startProcess(cmd *exec.Cmd, pidFile string) (*process, error) {
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return nil, errors.Join(fmt.Errorf("write pid file: %w", err), p.stop(syscall.SIGKILL, stopTimeout))
	}
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the exit; past timeout it kills the process and reports that.
func (p *process) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", filepath.Base(p.cmd.Path), err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within %s of %s; killed it", filepath.Base(p.cmd.Path), timeout, sig)
}

// spawnRequests feeds the spawner goroutine.
var spawnRequests = make(chan spawnRequest)

var spawnerOnce sync.Once

type spawnRequest struct {
	cmd *exec.Cmd
	err chan<- error
}

// spawn starts cmd from a goroutine locked to its OS thread for the life of the process. Linux sends
// the parent-death signal when the thread that forked the child exits, not the process
// (https://go.dev/issue/27505); the Go runtime ends a thread when a goroutine locked to it returns,
// so a child forked from an arbitrary goroutine could be signalled in the middle of a test. This
// thread never exits, so the signal fires exactly when the process dies.
func spawn(cmd *exec.Cmd) error {
	spawnerOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for req := range spawnRequests {
				req.err <- req.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd: cmd, err: errc}
	return <-errc
}

// reaperScript waits for EOF on stdin, which comes when the process holding the other end of the pipe
// exits however it exits, then stops the server ($2: pid file, $3: an argument only the server's
// command line has, $4: signal) and removes $1 if it is not empty.
const reaperScript = `trap '' HUP INT TERM
read -r _
pid=$(cat "$2" 2>/dev/null)
alive() { [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$3"; }
if alive; then
	kill -s "$4" "$pid" 2>/dev/null
	n=0
	while alive && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
	alive && kill -s KILL "$pid" 2>/dev/null
fi
[ -z "$1" ] || rm -rf -- "$1"
`

// reaper is a watchdog shell that outlives us. Pdeathsig stops a server when we die, but nothing of
// ours runs afterwards to remove its directory; the reaper does both.
type reaper struct {
	cmd *exec.Cmd
	w   *os.File // closing it (or our exit) sets the reaper off
}

// liveReapers keeps the pipe ends reachable: a garbage-collected *os.File is closed by its finalizer,
// which would tear a server down under a caller that kept only its URL.
var liveReapers sync.Map

func startReaper(removeDir, pidFile, marker, signal string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "pgtrail-reaper", removeDir, pidFile, marker, signal)
	cmd.Stdin = r
	// Own process group: a ^C aimed at `go test` must not kill the watchdog before it has cleaned up.
	// Stdout and stderr stay unset so that go test does not wait for the watchdog's pipes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	rp := &reaper{cmd: cmd, w: w}
	liveReapers.Store(rp, struct{}{})
	return rp, nil
}

// close sets the watchdog off and waits for it to finish.
func (r *reaper) close() error {
	liveReapers.Delete(r)
	err := r.w.Close()
	if werr := r.cmd.Wait(); werr != nil {
		err = errors.Join(err, fmt.Errorf("watchdog: %w", werr))
	}
	return err
}
