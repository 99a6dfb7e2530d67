package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

const (
	streamDB    = "bench_stream"
	recvSlot    = "bench_recv"
	publication = "pgtrail" // cdc.DefaultPublication: the daemon creates it
	s3Bucket    = "pgtrail-bench"
)

// Paths of the stream benchmark.
const (
	PathLimit    = "pg_recvlogical → /dev/null (decoding limit)"
	PathSlot     = "pgtrail stream, backlog in the slot"
	PathBackfill = "pgtrail stream --exit-when-caught-up, backlog at start"
)

// DrainRun is one drain of a backlog.
type DrainRun struct {
	Backlog  int     `json:"backlog"`
	Path     string  `json:"path"`
	Sink     string  `json:"sink"`
	Events   int64   `json:"events"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"events_per_second"`
	Share    float64 `json:"share_of_limit"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
	CPU      float64 `json:"cpu_seconds"`
	Backfill float64 `json:"backfill_seconds,omitempty"` // backfill path: part spent reading the table
	// Stalled: the daemon did not exit within Seconds and was stopped (backfill path).
	Stalled bool   `json:"stalled,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// LagRun is the commit-to-durable lag under a steady load.
type LagRun struct {
	Sink         string  `json:"sink"`
	Mode         string  `json:"mode"` // capture mode of the audited tables: trigger or wal
	TargetRate   int     `json:"target_events_per_second"`
	Rate         float64 `json:"events_per_second"`
	Transactions int     `json:"transactions"`
	Missing      int     `json:"missing"`
	P50          float64 `json:"p50_s"`
	P99          float64 `json:"p99_s"`
	Max          float64 `json:"max_s"`
	HistP50      float64 `json:"histogram_p50_s"` // pgtrail_stream_commit_to_durable_seconds
	HistP99      float64 `json:"histogram_p99_s"`
	Batches      float64 `json:"batches"`
	UploadP50    float64 `json:"upload_p50_s"` // pgtrail_stream_upload_seconds: one batch made durable
	UploadP99    float64 `json:"upload_p99_s"`
	// WatcherMaxPoll is the harness's slowest listing of the archive (it bounds the measuring error).
	WatcherMaxPoll float64 `json:"watcher_max_poll_s"`
	PeakRSS        int64   `json:"peak_rss_bytes"`
	Skipped        string  `json:"skipped,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// StreamResult is part 2.
type StreamResult struct {
	Drains []*DrainRun `json:"drains"`
	Seals  []SealRun   `json:"seals"`
	Lags   []*LagRun   `json:"lags"`
	Notes  []string    `json:"notes,omitempty"`
	// TrailEntries is how many entries audit.events holds at the end (part 3 verifies them).
	TrailEntries int64 `json:"trail_entries"`
	// Defaults are the daemon's default flags the lag run used (batching, seal interval).
	Defaults map[string]string `json:"defaults"`
}

// streamDefaults reads the defaults of the flags that shape the lag from `pgtrail stream --help`.
func streamDefaults(ctx context.Context, bin string) map[string]string {
	out, _ := runCapture(ctx, nil, bin, "stream", "--help")
	defaults := map[string]string{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) == 0 || !strings.HasPrefix(f[0], "-") {
			continue
		}
		name := strings.TrimLeft(f[0], "-")
		switch name {
		case "batch-age", "batch-events", "batch-bytes", "seal-interval":
		default:
			continue
		}
		if _, after, ok := strings.Cut(lines[i+1], "(default "); ok {
			defaults[name] = strings.TrimSuffix(strings.TrimSpace(after), ")")
		}
	}
	return defaults
}

// SealRun is how fast `pgtrail seal --once` chained a backlog (context for the drains).
type SealRun struct {
	Backlog int     `json:"backlog"`
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
}

// target is one archive fed by its own replication slot.
type target struct {
	name string // file or s3
	url  string
	slot string
	args []string // sink flags beyond --archive
	env  []string
}

// streamBench runs part 2 and keeps what part 3 needs.
type streamBench struct {
	cfg *Config
	cl  *cluster
	t   *tools
	dir string
	env []string // DATABASE_URL of the stream database
	key string   // signing key; key + ".pub" verifies
	s3  *testenv.S3Server

	live, backfill []*target // file first, then s3 when available
}

func runStream(ctx context.Context, cfg *Config, cl *cluster, t *tools, dir string) (*StreamResult, *streamBench, error) {
	log := cfg.logger().With("part", PartStream)
	s := &streamBench{cfg: cfg, cl: cl, t: t, dir: dir}
	res := &StreamResult{Defaults: streamDefaults(ctx, t.pgtrail)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	log.Info("setting up", "database", streamDB)
	if err := s.setup(ctx, res); err != nil {
		return nil, s, err
	}
	for _, n := range cfg.Backlogs {
		log.Info("backlog", "events", n)
		if err := s.drain(ctx, n, res); err != nil {
			return res, s, fmt.Errorf("backlog of %d: %w", n, err)
		}
	}
	// Modes outer, sinks inner: each mode's runs are side by side, and the file archive's stream
	// stops before the S3 archive's last run (the verify part counts what each archive holds).
	for _, mode := range cfg.LagModes {
		if err := s.setMode(ctx, mode); err != nil {
			return res, s, err
		}
		for _, tg := range s.live {
			log.Info("lag under steady load", "sink", tg.name, "mode", mode, "events_per_second", cfg.LagRate, "for", cfg.LagDuration)
			lr := &LagRun{Sink: tg.name, Mode: mode, TargetRate: cfg.LagRate}
			res.Lags = append(res.Lags, lr)
			if err := s.lag(ctx, tg, lr); err != nil {
				if ctx.Err() != nil {
					return res, s, ctx.Err()
				}
				lr.Error = err.Error()
				log.Error("lag measurement failed", "sink", tg.name, "mode", mode, "err", err)
			}
		}
		if !t.versitygw {
			res.Lags = append(res.Lags, &LagRun{Sink: "s3", Mode: mode, TargetRate: cfg.LagRate, Skipped: t.s3Note})
		}
	}
	conn, err := cl.connect(ctx, streamDB)
	if err != nil {
		return res, s, err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SELECT seq FROM audit.chain_head").Scan(&res.TrailEntries); err != nil {
		return res, s, err
	}
	return res, s, nil
}

// setMode puts both audited tables in capture mode (trigger or wal), as a DBA would.
func (s *streamBench) setMode(ctx context.Context, mode string) error {
	for _, table := range []string{"public.accounts", "public.payments"} {
		if _, err := runCapture(ctx, s.env, s.t.pgtrail, "enable", table, "--mode", mode); err != nil {
			return fmt.Errorf("enable %s --mode %s: %w", table, mode, err)
		}
	}
	return nil
}

// setup creates the audited database, the archives and their slots, all before any backlog, so
// that the backlog reaches every slot through the WAL.
func (s *streamBench) setup(ctx context.Context, res *StreamResult) error {
	if err := s.cl.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+streamDB+" WITH (FORCE)", "CREATE DATABASE "+streamDB); err != nil {
		return err
	}
	if err := s.cl.exec(ctx, streamDB, schemaSQL); err != nil {
		return err
	}
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `INSERT INTO accounts
		SELECT i, 'owner ' || i, 1000, 'user' || i || '@example.com', timestamptz '2024-01-01 00:00:00+00'
		  FROM generate_series(1, $1::bigint) AS i`, s.cfg.Accounts); err != nil {
		return fmt.Errorf("fill accounts: %w", err)
	}
	s.env = append(os.Environ(), "DATABASE_URL="+s.cl.url(streamDB))
	// Mode trigger: this part measures archiving a backlog of sealed entries (the write part
	// measures WAL capture).
	for _, args := range [][]string{{"migrate", "up"}, {"enable", "public.accounts", "--mode", "trigger"}, {"enable", "public.payments", "--mode", "trigger"}} {
		if _, err := runCapture(ctx, s.env, s.t.pgtrail, args...); err != nil {
			return err
		}
	}
	s.key = filepath.Join(s.dir, "signing.key")
	if _, err := runCapture(ctx, nil, s.t.pgtrail, "keygen", "--out", s.key); err != nil {
		return err
	}

	s.live = append(s.live, &target{name: "file", url: "file://" + filepath.Join(s.dir, "archive-live"), slot: "pgtrail_live_file", env: s.env})
	s.backfill = append(s.backfill, &target{name: "file", url: "file://" + filepath.Join(s.dir, "archive-backfill"), slot: "pgtrail_backfill_file", env: s.env})
	if s.t.versitygw {
		if s.s3, err = testenv.StartS3(ctx, filepath.Join(s.dir, "s3")); err != nil {
			if !s.cfg.Smoke {
				return fmt.Errorf("start the S3 server: %w", err)
			}
			s.t.versitygw, s.t.s3Note = false, fmt.Sprintf("the S3 server did not start (%v): S3 rows skipped", err)
		}
	}
	if s.t.versitygw {
		env := append(s.env, "AWS_ACCESS_KEY_ID="+s.s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.s3.SecretKey, "AWS_REGION="+s.s3.Region)
		sinkArgs := []string{"--s3-endpoint", s.s3.Endpoint, "--retention", "1d"}
		// The backlog-at-start path runs on the file sink only: the S3 sink's speed shows in the
		// slot path, and a second S3 run would double the time a stalled catch-up costs.
		url := "s3://" + s3Bucket + "/live"
		if _, err := runCapture(ctx, env, s.t.pgtrail, "archive", "init", url, "--s3-endpoint", s.s3.Endpoint, "--retention", "1d", "--glacier-after", "0"); err != nil {
			return err
		}
		s.live = append(s.live, &target{name: "s3", url: url, slot: "pgtrail_live_s3", args: sinkArgs, env: env})
	} else {
		res.Notes = append(res.Notes, s.t.s3Note)
	}
	// Create every slot now, on a trail that holds only the enable events.
	for _, tg := range append(append([]*target{}, s.live...), s.backfill...) {
		args := append([]string{"stream", "--archive", tg.url, "--slot", tg.slot, "--signing-key", s.key, "--exit-when-caught-up"}, tg.args...)
		p, err := startProc(ctx, filepath.Join(s.dir, "stream-"+tg.slot+".log"), nil, tg.env, s.t.pgtrail, args...)
		if err != nil {
			return err
		}
		if _, err := p.wait(); err != nil {
			return fmt.Errorf("create slot %s: %w (see %s)", tg.slot, err, filepath.Join(s.dir, "stream-"+tg.slot+".log"))
		}
	}
	return nil
}

// daemon is a running `pgtrail stream` with its metrics endpoint.
type daemon struct {
	p       *proc
	slot    string
	metrics string // http://127.0.0.1:port/metrics
}

func (s *streamBench) startDaemon(ctx context.Context, tg *target, extra ...string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"stream", "--archive", tg.url, "--slot", tg.slot, "--signing-key", s.key,
		"--metrics-addr", addr, "--log-format", "json"}, tg.args...)
	args = append(args, extra...)
	p, err := startProc(ctx, filepath.Join(s.dir, "stream-"+tg.slot+".log"), nil, tg.env, s.t.pgtrail, args...)
	if err != nil {
		return nil, err
	}
	d := &daemon{p: p, slot: tg.slot, metrics: "http://" + addr + "/metrics"}
	// Streaming has begun once the slot is active: the daemon backfills before it starts replication.
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		p.stop(10 * time.Second)
		return nil, err
	}
	defer conn.Close(context.Background())
	err = waitFor(ctx, 5*time.Minute, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("pgtrail stream exited early (see %s)", filepath.Join(s.dir, "stream-"+tg.slot+".log"))
		}
		var active bool
		if err := conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", tg.slot).Scan(&active); err != nil {
			return false, err
		}
		if !active {
			return false, nil
		}
		_, err := d.scrape(ctx)
		return err == nil, nil
	})
	if err != nil {
		p.stop(10 * time.Second)
		return nil, fmt.Errorf("wait for pgtrail stream on slot %s: %w", tg.slot, err)
	}
	return d, nil
}

func (d *daemon) scrape(ctx context.Context) (metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.metrics, nil)
	if err != nil {
		return metrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return metrics{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return metrics{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return metrics{}, fmt.Errorf("GET %s: %s", d.metrics, resp.Status)
	}
	return parseMetrics(string(body))
}

func (d *daemon) eventsArchived(ctx context.Context) (float64, error) {
	m, err := d.scrape(ctx)
	if err != nil {
		return 0, err
	}
	return m.values["pgtrail_stream_events_total"], nil
}

// drain measures one backlog size: the decoding limit, the daemon draining the backlog from its
// slot, and the daemon started with the backlog already there.
func (s *streamBench) drain(ctx context.Context, n int, res *StreamResult) error {
	log := s.cfg.logger().With("part", PartStream, "backlog", n)
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	// The slot path: daemons run (without sealing) while the backlog is written, so their slots
	// have decoded everything before it; they are paused (SIGSTOP) while it is sealed, and the
	// drain is timed from SIGCONT. pg_recvlogical's slot is created at the same point.
	var daemons []*daemon
	defer func() {
		for _, d := range daemons {
			d.p.stop(30 * time.Second)
		}
	}()
	// The backlog-at-start daemons get a fresh slot here, before the backlog: what an earlier
	// (maybe stalled) run left in their slot must not count against this one.
	for _, tg := range s.backfill {
		// The previous run's walsender may still be going away after its daemon exited.
		if err := waitFor(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
			var active bool
			err := conn.QueryRow(ctx, "SELECT COALESCE(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", tg.slot).Scan(&active)
			return !active, err
		}); err != nil {
			return fmt.Errorf("wait for slot %s to be released: %w", tg.slot, err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", tg.slot); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", tg.slot); err != nil {
			return fmt.Errorf("create slot %s: %w", tg.slot, err)
		}
		// A slot made anew is past what the stream confirmed on the old one: the stream would
		// record a CAPTURE_GAP entry (a superuser moving the slot). Here the reset is the
		// harness's, before any backlog: it forgets the old slot's position.
		if _, err := conn.Exec(ctx, "DELETE FROM audit.stream_slots WHERE slot = $1", tg.slot); err != nil {
			return fmt.Errorf("forget slot %s: %w", tg.slot, err)
		}
	}
	for _, tg := range s.live {
		d, err := s.startDaemon(ctx, tg, "--seal-interval", "0")
		if err != nil {
			return err
		}
		daemons = append(daemons, d)
	}
	log.Info("writing the backlog (pending, not sealed yet)")
	if err := s.writeBacklog(ctx, conn, n); err != nil {
		return err
	}
	var written string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&written); err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Minute, 100*time.Millisecond, func() (bool, error) {
		var behind int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots s
			LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = ANY($1) AND (r.sent_lsn IS NULL OR r.sent_lsn < $2::pg_lsn)`, slotNames(s.live), written).Scan(&behind)
		return behind == 0, err
	}); err != nil {
		return fmt.Errorf("wait for the daemons to decode the backlog's writes: %w", err)
	}
	base := make([]float64, len(daemons))
	for i, d := range daemons {
		if base[i], err = d.eventsArchived(ctx); err != nil {
			return err
		}
		if err := d.p.signal(syscall.SIGSTOP); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", recvSlot); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", recvSlot); err != nil {
		return fmt.Errorf("create slot %s: %w", recvSlot, err)
	}

	log.Info("sealing the backlog")
	start := time.Now()
	out, err := runCapture(ctx, s.env, s.t.pgtrail, "seal", "--once", "--json")
	if err != nil {
		return err
	}
	var sealed struct{ Sealed int64 }
	if err := json.Unmarshal([]byte(out), &sealed); err != nil {
		return fmt.Errorf("parse pgtrail seal --json: %w: %s", err, out)
	}
	res.Seals = append(res.Seals, SealRun{Backlog: n, Events: sealed.Sealed, Seconds: time.Since(start).Seconds()})
	var end string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		return err
	}
	events := sealed.Sealed

	log.Info("pg_recvlogical", "end_lsn", end)
	limit := &DrainRun{Backlog: n, Path: PathLimit, Sink: "/dev/null", Events: events}
	res.Drains = append(res.Drains, limit)
	p, err := startProc(ctx, filepath.Join(s.dir, "pg_recvlogical.log"), nil, os.Environ(), s.t.recvlogical,
		"-d", s.cl.url(streamDB), "--slot", recvSlot, "--start", "--endpos", end, "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+publication, "-o", "messages=true", "-f", "/dev/null")
	if err != nil {
		return err
	}
	pr, err := p.wait()
	if err != nil {
		return fmt.Errorf("pg_recvlogical: %w", err)
	}
	limit.set(pr.Wall, pr)

	for i, d := range daemons {
		tg := s.live[i]
		log.Info("draining from the slot", "sink", tg.name)
		run := &DrainRun{Backlog: n, Path: PathSlot, Sink: tg.name, Events: events}
		res.Drains = append(res.Drains, run)
		cpu0, _ := procCPU(d.p.pid())
		start := time.Now()
		if err := d.p.signal(syscall.SIGCONT); err != nil {
			return err
		}
		err := waitFor(ctx, 30*time.Minute, 20*time.Millisecond, func() (bool, error) {
			if d.p.exited() {
				return false, errors.New("pgtrail stream exited")
			}
			got, err := d.eventsArchived(ctx)
			if err != nil {
				return false, nil // busy; try again
			}
			return got-base[i] >= float64(events), nil
		})
		wall := time.Since(start)
		cpu1, _ := procCPU(d.p.pid())
		pr, serr := d.p.stop(30 * time.Second)
		if err = errors.Join(err, serr); err != nil {
			run.Error = err.Error()
			continue
		}
		pr.CPU = cpu1 - cpu0
		run.set(wall, pr)
	}
	daemons = nil

	for _, tg := range s.backfill {
		log.Info("starting with the backlog waiting", "sink", tg.name)
		run := &DrainRun{Backlog: n, Path: PathBackfill, Sink: tg.name, Events: events}
		res.Drains = append(res.Drains, run)
		if err := s.backfillRun(ctx, tg, run, max(backfillMinTimeout, backfillTimeoutFactor*pr.Wall)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			run.Error = err.Error()
		}
	}
	for _, r := range res.Drains {
		if r.Backlog == n && limit.PerSec > 0 && r.PerSec > 0 {
			r.Share = r.PerSec / limit.PerSec
		}
	}
	return nil
}

// A daemon started with a backlog gets this long (at least the minimum, else this many times
// pg_recvlogical's time) before it is stopped and reported as stalled.
const (
	backfillMinTimeout    = time.Minute
	backfillTimeoutFactor = 10
)

// backfillRun times `pgtrail stream --exit-when-caught-up` started with the backlog already sealed.
func (s *streamBench) backfillRun(ctx context.Context, tg *target, run *DrainRun, timeout time.Duration) error {
	logPath := filepath.Join(s.dir, fmt.Sprintf("stream-%s-%d.log", tg.slot, run.Backlog))
	args := append([]string{"stream", "--archive", tg.url, "--slot", tg.slot, "--signing-key", s.key,
		"--exit-when-caught-up", "--seal-interval", "0", "--log-format", "json"}, tg.args...)
	p, err := startProc(ctx, logPath, nil, tg.env, s.t.pgtrail, args...)
	if err != nil {
		return err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var pr procResult
	select {
	case <-p.done:
		pr, err = p.wait()
	case <-timer.C:
		pr, err = p.stop(30 * time.Second)
		run.Stalled = true
	case <-ctx.Done():
		p.stop(30 * time.Second)
		return ctx.Err()
	}
	if bf, ok := backfillSeconds(logPath, p.start); ok {
		run.Backfill = bf
	}
	if err != nil && !run.Stalled {
		return fmt.Errorf("%v (log: %s)", err, logPath)
	}
	if run.Stalled {
		run.Seconds, run.PeakRSS, run.CPU = timeout.Seconds(), pr.PeakRSS, pr.CPU.Seconds()
		return nil
	}
	run.set(pr.Wall, pr)
	return nil
}

func (r *DrainRun) set(wall time.Duration, pr procResult) {
	r.Seconds = wall.Seconds()
	if r.Seconds > 0 {
		r.PerSec = float64(r.Events) / r.Seconds
	}
	r.PeakRSS = pr.PeakRSS
	r.CPU = pr.CPU.Seconds()
}

func slotNames(ts []*target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.slot)
	}
	return out
}

// writeBacklog writes n audit events, half account updates (before and after images) and half
// payment inserts, in transactions of at most ChunkRows rows: the event mix of the write part.
func (s *streamBench) writeBacklog(ctx context.Context, conn *pgx.Conn, n int) error {
	updates, inserts := n/2, n-n/2
	chunk := min(s.cfg.ChunkRows, s.cfg.Accounts)
	for done := 0; done < updates; {
		k := min(chunk, updates-done)
		if _, err := conn.Exec(ctx, `UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id BETWEEN 1 AND $1`, k); err != nil {
			return fmt.Errorf("write backlog: %w", err)
		}
		done += k
	}
	for done := 0; done < inserts; {
		k := min(s.cfg.ChunkRows, inserts-done)
		if _, err := conn.Exec(ctx, `INSERT INTO payments (account_id, amount, created_at)
			SELECT 1 + g % $2, 1, now() FROM generate_series(1, $1::int) AS g`, k, s.cfg.Accounts); err != nil {
			return fmt.Errorf("write backlog: %w", err)
		}
		done += k
	}
	return nil
}

// backfillSeconds reads a JSON stream log and returns how long after start the daemon began
// replication ("streaming"), i.e. the time spent backfilling from the table.
func backfillSeconds(logPath string, start time.Time) (float64, bool) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "streaming" {
			continue
		}
		return rec.Time.Sub(start).Seconds(), true
	}
	return 0, false
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// sinkFor opens the archive of a target for reading.
func (s *streamBench) sinkFor(ctx context.Context, tg *target) (archive.Sink, error) {
	opts := archive.Options{}
	if tg.name == "s3" {
		opts = archive.Options{Endpoint: s.s3.Endpoint, Region: s.s3.Region, AccessKey: s.s3.AccessKey, SecretKey: s.s3.SecretKey}
	}
	return archive.Open(ctx, tg.url, opts)
}

func (s *streamBench) close() error {
	if s == nil || s.s3 == nil {
		return nil
	}
	return s.s3.Close()
}
