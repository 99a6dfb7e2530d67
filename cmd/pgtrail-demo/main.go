// Command pgtrail-demo runs pgtrail's main job end to end on a throwaway PostgreSQL (and, when
// the versitygw binary is around, a local S3 server with Object Lock): install, audit two tables,
// drive the example payments API with several actors, seal, verify, stream the trail to the
// archive, verify again, and clean up. make demo runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/archive"
	"github.com/pgtrail/pgtrail/examples/payments-api/service"
	"github.com/pgtrail/pgtrail/testcontainers"
)

func main() {
	bin := flag.String("pgtrail", "pgtrail", "path of the pgtrail binary to demonstrate")
	keep := flag.Bool("keep", false, "keep the demo directory (database, archive) instead of removing it")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
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

// demo holds what the steps share.
type demo struct {
	bin string
	env []string
	dir string
}

// pgtrail runs the CLI, echoing the command and its output.
func (d *demo) pgtrail(ctx context.Context, args ...string) (string, error) {
	fmt.Printf("$ pgtrail %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = d.env
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = os.Stdout
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("pgtrail %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func run(ctx context.Context, bin string, keep bool) error {
	if p, err := exec.LookPath(bin); err == nil {
		bin, _ = filepath.Abs(p)
	}
	dir, err := os.MkdirTemp("", "pgtrail-demo-")
	if err != nil {
		return err
	}
	// PostgreSQL runs as an unprivileged user when we are root: it must reach its directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if keep {
		fmt.Printf("demo directory: %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	step("Starting a throwaway PostgreSQL 15 (wal_level=logical, fsync on)")
	cluster, err := testcontainers.StartCluster(ctx, filepath.Join(dir, "pg"), nil)
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cluster.Close()
	url := cluster.URL("postgres")
	fmt.Println("DATABASE_URL=" + url)
	d := &demo{bin: bin, dir: dir, env: append(os.Environ(), "DATABASE_URL="+url)}

	step("Installing the audit schema")
	if _, err := d.pgtrail(ctx, "migrate", "up"); err != nil {
		return err
	}

	step("Creating the demo tables users and payments, and auditing them")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The example service creates its tables and calls audit.enable on them, as a DBA would with
	// pgtrail enable users / pgtrail enable payments.
	if err := service.Setup(ctx, pool); err != nil {
		return err
	}

	step("Driving the example payments API: HTTP request → actor in context → audited write")
	if err := drive(ctx, pool); err != nil {
		return err
	}

	step("Sealing: chaining the committed entries into audit.events")
	if _, err := d.pgtrail(ctx, "seal", "--once"); err != nil {
		return err
	}
	if err := show(ctx, pool); err != nil {
		return err
	}

	step("Verifying the chain in the database")
	if _, err := d.pgtrail(ctx, "verify", "db"); err != nil {
		return err
	}
	if _, err := d.pgtrail(ctx, "status"); err != nil {
		return err
	}

	step("Streaming the trail over logical replication into a local archive (file://), with signed digests")
	key := filepath.Join(dir, "signing.key")
	if _, err := d.pgtrail(ctx, "keygen", "--out", key); err != nil {
		return err
	}
	fileArchive := "file://" + filepath.Join(dir, "archive")
	if _, err := d.pgtrail(ctx, "stream", "--archive", fileArchive, "--signing-key", key, "--exit-when-caught-up"); err != nil {
		return err
	}
	if err := listArchive(ctx, fileArchive, archive.Options{}); err != nil {
		return err
	}

	step("Verifying the archive (hashes, signed digests) and cross-checking it against the database")
	if _, err := d.pgtrail(ctx, "verify", "all", fileArchive, "--public-key", key+".pub"); err != nil {
		return err
	}

	if err := streamToS3(ctx, d, key); err != nil {
		return err
	}

	step("Tampering as a superuser with triggers disabled, then verifying again")
	if _, err := pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit.events SET actor_id = 'nobody' WHERE seq = 3; COMMIT`); err != nil {
		return err
	}
	if _, err := d.pgtrail(ctx, "verify", "all", fileArchive, "--public-key", key+".pub"); err == nil {
		return fmt.Errorf("verify did not catch the tampering")
	}
	fmt.Println("(exit code 1: tampering found, as expected)")

	step("Done: PostgreSQL, S3 and the demo directory are removed")
	return nil
}

// streamToS3 repeats the stream into the local S3 server with Object Lock, when it is available.
func streamToS3(ctx context.Context, d *demo, key string) error {
	if _, err := exec.LookPath(os.Getenv(testcontainers.EnvVersityGW)); err != nil && os.Getenv(testcontainers.EnvVersityGW) == "" {
		fmt.Println("\n(no versitygw binary: skipping the S3 part; run make tools to build it)")
		return nil
	}
	step("Streaming into a local S3 server (versitygw) with Object Lock: COMPLIANCE, each object locked for 1 minute")
	srv, err := testcontainers.StartS3(ctx, filepath.Join(d.dir, "s3"))
	if err != nil {
		fmt.Printf("(S3 server did not start: %v; skipping the S3 part)\n", err)
		return nil
	}
	defer srv.Close()
	s3env := append(d.env, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	d2 := &demo{bin: d.bin, dir: d.dir, env: s3env}
	target := "s3://pgtrail-demo/trail"
	if _, err := d2.pgtrail(ctx, "archive", "init", target, "--s3-endpoint", srv.Endpoint, "--retention", "1d", "--glacier-after", "0"); err != nil {
		return err
	}
	if _, err := d2.pgtrail(ctx, "stream", "--archive", target, "--s3-endpoint", srv.Endpoint, "--retention", "1m",
		"--signing-key", key, "--slot", "pgtrail_s3", "--exit-when-caught-up"); err != nil {
		return err
	}
	return listArchive(ctx, target, archive.Options{Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
}

// drive plays a few users against the API.
func drive(ctx context.Context, pool *pgxpool.Pool) error {
	h, err := service.New(service.Config{Pool: pool})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	type call struct{ method, path, token, agent, body string }
	calls := []call{
		{"POST", "/login", "", "Mozilla/5.0 (demo)", `{"user":"alice","password":"alice-password"}`},
		{"POST", "/users", "alice-token", "Mozilla/5.0 (demo)", `{"name":"Carol","email":"carol@example.com"}`},
		{"POST", "/payments", "alice-token", "Mozilla/5.0 (demo)", `{"user_id":1,"amount_cents":1250,"currency":"EUR"}`},
		{"POST", "/payments/1/refund", "alice-token", "Mozilla/5.0 (demo)", ``},
		{"GET", "/users/1", "alice-token", "Mozilla/5.0 (demo)", ``},
		{"GET", "/payments/export", "alice-token", "curl/8.5", ``},
		{"POST", "/login", "", "python-requests/2.31", `{"user":"bob","password":"guess"}`},
		{"POST", "/login", "", "curl/8.5", `{"user":"bob","password":"bob-password"}`},
		{"POST", "/users", "bob-token", "curl/8.5", `{"name":"Dave","email":"dave@example.org"}`},
		{"POST", "/payments", "bob-token", "curl/8.5", `{"user_id":2,"amount_cents":999,"currency":"USD"}`},
	}
	for i, c := range calls {
		req, err := http.NewRequestWithContext(ctx, c.method, srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", c.agent)
		req.Header.Set("X-Request-Id", fmt.Sprintf("demo-%02d", i+1))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%-5s %-22s as %-6s → %d\n", c.method, c.path, strings.TrimSuffix(c.token, "-token"), resp.StatusCode)
	}
	return nil
}

// show prints the trail the API produced.
func show(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `SELECT seq, action_type, resource_type, COALESCE(resource_id, ''), outcome, actor_id,
		COALESCE(host(actor_ip), ''), COALESCE(request_id, ''), COALESCE(tenant_id, ''), left(encode(entry_hash, 'hex'), 12)
		FROM audit.events WHERE action_type <> 'DDL' ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Printf("%4s  %-13s %-16s %-4s %-8s %-9s %-10s %-8s %-7s %s\n", "seq", "action", "resource", "id", "outcome", "actor", "ip", "request", "tenant", "entry_hash")
	for rows.Next() {
		var seq int64
		var a, rt, rid, o, actor, ip, req, tenant, h string
		if err := rows.Scan(&seq, &a, &rt, &rid, &o, &actor, &ip, &req, &tenant, &h); err != nil {
			return err
		}
		fmt.Printf("%4d  %-13s %-16s %-4s %-8s %-9s %-10s %-8s %-7s %s…\n", seq, a, rt, rid, o, actor, ip, req, tenant, h)
	}
	return rows.Err()
}

// listArchive prints the archive's objects and what they hold.
func listArchive(ctx context.Context, url string, opts archive.Options) error {
	sink, err := archive.Open(ctx, url, opts)
	if err != nil {
		return err
	}
	keys, err := sink.List(ctx, "")
	if err != nil {
		return err
	}
	fmt.Printf("\n%s holds %d objects:\n", url, len(keys))
	for _, k := range keys {
		data, err := sink.Get(ctx, k)
		if err != nil {
			return err
		}
		what := ""
		if strings.HasSuffix(k, ".parquet") {
			evs, err := archive.DecodeParquet(data)
			if err != nil {
				return err
			}
			what = fmt.Sprintf("%d events, seq %d..%d", len(evs), evs[0].Seq, evs[len(evs)-1].Seq)
		} else {
			var dg map[string]any
			if json.Unmarshal(data, &dg) == nil {
				what = fmt.Sprintf("digest of %v (signed: %v)", dg["file_key"], dg["signature"] != "")
			}
		}
		fmt.Printf("  %-80s %7d B  %s\n", k, len(data), what)
	}
	return nil
}
