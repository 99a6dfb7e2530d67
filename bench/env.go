package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/testenv"
)

// clusterSettings are the bench cluster's postgresql.conf settings on top of testenv's
// (wal_level=logical, shared_buffers=128MB, max_connections=200, ...). Durability is on, as in
// production. max_wal_size keeps WAL-triggered checkpoints out of the measured runs (a
// CHECKPOINT precedes each one instead); wal_sender_timeout lets the stream part pause a daemon
// while a backlog is sealed.
var clusterSettings = map[string]string{
	"fsync":              "on",
	"synchronous_commit": "on",
	"full_page_writes":   "on",
	"max_wal_size":       "4GB",
	"wal_sender_timeout": "10min",
}

// cluster is the throwaway PostgreSQL the benchmark runs on; it can be restarted with other
// settings on the same data directory.
type cluster struct {
	dir   string
	extra map[string]string
	c     *testenv.Cluster
}

func startCluster(ctx context.Context, dir string, extra map[string]string) (*cluster, error) {
	cl := &cluster{dir: dir}
	if err := cl.start(ctx, extra); err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *cluster) start(ctx context.Context, extra map[string]string) error {
	settings := maps.Clone(clusterSettings)
	maps.Copy(settings, extra)
	c, err := testenv.StartCluster(ctx, cl.dir, settings)
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	cl.c, cl.extra = c, extra
	return nil
}

// restart stops the server and starts it on the same data directory with extra settings (nil:
// the plain bench settings), unless it already runs with exactly those.
func (cl *cluster) restart(ctx context.Context, extra map[string]string) error {
	if maps.Equal(cl.extra, extra) {
		return nil
	}
	if err := cl.c.Close(); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	return cl.start(ctx, extra)
}

func (cl *cluster) url(db string) string { return cl.c.URL(db) }

// urlWithApp is url(db) with an application_name, to find the connection in pg_stat_activity.
func (cl *cluster) urlWithApp(db, app string) string {
	return cl.c.URL(db) + "&application_name=" + app
}

func (cl *cluster) close() error { return cl.c.Close() }

// connect opens a connection to db on the cluster.
func (cl *cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, cl.url(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	return conn, nil
}

// exec runs statements on db in one connection, one after another.
func (cl *cluster) exec(ctx context.Context, db string, stmts ...string) error {
	conn, err := cl.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// tools are the external programs the benchmark drives.
type tools struct {
	pgtrail     string // built from the module
	pgbench     string
	recvlogical string
	pgBinDir    string // where the postgres server binary really lives
	pgaudit     bool   // the pgaudit library is installed
	pgauditNote string // why not, when it is not
	versitygw   bool
	s3Note      string
}

// findTools locates PostgreSQL's client programs beside the server binary (same major version),
// else on PATH, and checks for pgaudit (installing it with apt-get when asked and root).
func findTools(ctx context.Context, cfg *Config) (*tools, error) {
	t := &tools{}
	pg, err := exec.LookPath("postgres")
	if err != nil {
		return nil, fmt.Errorf("find the PostgreSQL 15 server binaries on PATH (or add /usr/lib/postgresql/15/bin): %w", err)
	}
	if real, err := filepath.EvalSymlinks(pg); err == nil {
		pg = real
	}
	t.pgBinDir = filepath.Dir(pg)
	find := func(name string) (string, error) {
		if p := filepath.Join(t.pgBinDir, name); isExecutable(p) {
			return p, nil
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("find %s (PostgreSQL client programs): %w", name, err)
		}
		return p, nil
	}
	if t.pgbench, err = find("pgbench"); err != nil && cfg.has(PartWrite) {
		return nil, err
	}
	if t.recvlogical, err = find("pg_recvlogical"); err != nil && cfg.has(PartStream) {
		return nil, err
	}
	if cfg.has(PartWrite) {
		t.pgaudit, t.pgauditNote = ensurePgaudit(ctx, cfg, t.pgBinDir)
	}
	if cfg.has(PartStream) {
		if _, err := findVersityGW(cfg.Root); err != nil {
			t.s3Note = "no versitygw binary (make tools builds it): S3 rows skipped"
		} else {
			t.versitygw = true
		}
	}
	return t, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// findVersityGW mirrors testenv's search so that a missing S3 server is a note, not a failure.
func findVersityGW(root string) (string, error) {
	if p := os.Getenv(testenv.EnvVersityGW); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s=%s is not an executable", testenv.EnvVersityGW, p)
	}
	if p := filepath.Join(root, ".cache", "bin", "versitygw"); isExecutable(p) {
		return p, nil
	}
	return exec.LookPath("versitygw")
}

// pgauditPackage is the Debian package of pgaudit for PostgreSQL 15.
const pgauditPackage = "postgresql-15-pgaudit"

// ensurePgaudit reports whether pgaudit.so is installed, installing it first when allowed.
func ensurePgaudit(ctx context.Context, cfg *Config, binDir string) (bool, string) {
	lib, err := pgauditLibrary(ctx, binDir)
	if err != nil {
		return false, fmt.Sprintf("pgaudit check failed: %v", err)
	}
	if lib {
		return true, ""
	}
	if !cfg.InstallPgaudit {
		return false, "pgaudit is not installed (apt-get install -y " + pgauditPackage + "); skipped"
	}
	if os.Geteuid() != 0 {
		return false, "pgaudit is not installed and installing it needs root (apt-get install -y " + pgauditPackage + "); skipped"
	}
	cfg.logger().Info("installing pgaudit", "package", pgauditPackage)
	out, err := runCapture(ctx, nil, "apt-get", "install", "-y", pgauditPackage)
	if err != nil {
		// A stale package index is the usual reason; refresh it once.
		if _, uerr := runCapture(ctx, nil, "apt-get", "update"); uerr == nil {
			out, err = runCapture(ctx, nil, "apt-get", "install", "-y", pgauditPackage)
		}
	}
	if err != nil {
		return false, fmt.Sprintf("pgaudit could not be installed (apt-get install -y %s: %v: %s); skipped", pgauditPackage, err, lastLines(out, 2))
	}
	if lib, _ := pgauditLibrary(ctx, binDir); !lib {
		return false, "apt-get installed " + pgauditPackage + " but pgaudit.so is not in the server's library directory; skipped"
	}
	return true, ""
}

func pgauditLibrary(ctx context.Context, binDir string) (bool, error) {
	pgConfig := filepath.Join(binDir, "pg_config")
	out, err := runCapture(ctx, nil, pgConfig, "--pkglibdir")
	if err != nil {
		return false, err
	}
	_, err = os.Stat(filepath.Join(strings.TrimSpace(out), "pgaudit.so"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// runCapture runs a command to completion and returns its combined output.
func runCapture(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// buildPgtrail builds the pgtrail binary into .cache/bin, as make build does.
func buildPgtrail(ctx context.Context, root string) (string, error) {
	bin := filepath.Join(root, ".cache", "bin", "pgtrail")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgtrail")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/pgtrail: %w\n%s", err, out)
	}
	return bin, nil
}

// Machine describes where the figures come from.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	MemoryGiB  string `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	PostgreSQL string `json:"postgresql"`
	Go         string `json:"go"`
	Commit     string `json:"commit"`
	LoadAtEnd  string `json:"load_at_end"`
	LoadAtBeg  string `json:"load_at_start"`
}

func describeMachine(ctx context.Context, root string, t *tools) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadAtBeg: loadAvg()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if kb, err := readMeminfoKB("MemTotal"); err == nil {
		m.MemoryGiB = fmt.Sprintf("%.1f", float64(kb)/(1<<20))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := runCapture(ctx, nil, filepath.Join(t.pgBinDir, "postgres"), "--version"); err == nil {
		m.PostgreSQL = strings.TrimSpace(out)
	}
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func readMeminfoKB(field string) (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", field)
}

// waitFor polls cond every interval until it returns true, an error, or timeout passes.
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
