package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	//go:embed sql/schema.sql
	schemaSQL string
	//go:embed sql/workload.pgbench
	workloadScript string
	//go:embed sql/plain_trigger.sql
	plainTriggerSQL string
	//go:embed sql/naive_chain.sql
	naiveChainSQL string
	//go:embed sql/pgaudit.sql
	pgauditSQL string
)

// Scenario names.
const (
	ScenarioNone    = "none"
	ScenarioPgaudit = "pgaudit"
	ScenarioPlain   = "plain"
	ScenarioNaive   = "naive"
	ScenarioPgtrail = "pgtrail"
	// What deployments run: the daemon streaming to a file archive beside the workload.
	ScenarioPgtrailStream = "pgtrail-trigger-stream" // trigger capture; the stream seals and archives
	ScenarioPgtrailWAL    = "pgtrail-wal-stream"     // WAL capture; the stream chains and archives
	ScenarioPgtrailWALHot = "pgtrail-wal-hot-path"   // WAL capture with nothing reading the slot during the run
)

// Diagnostic scenarios: not run unless named in Config.Scenarios. They take pgtrail apart to
// show where its cost comes from.
const (
	ScenarioPgtrailNoSealer = "pgtrail-no-sealer"
	ScenarioPgtrailNoIndex  = "pgtrail-no-secondary-indexes"
)

// scenario is one way of auditing the workload.
type scenario struct {
	name  string
	label string
	// preload is shared_preload_libraries for the scenario ("" for none): the cluster is restarted.
	preload string
	// setup installs the audit in a fresh copy of the template database.
	setup func(ctx context.Context, w *writeBench, db string) error
	// sealer runs `pgtrail seal --interval 200ms` beside the workload.
	sealer bool
	// pending: the scenario writes audit.pending (pgtrail); what is left is sealed after the warm-up.
	pending bool
	// stream runs `pgtrail stream` to a file archive beside the workload (it seals too); after
	// each round it is waited for until it has chained and archived everything.
	stream bool
	// wal: the tables are audited in mode wal (the slot is dropped with the round's database).
	wal bool
	// diagnostic scenarios run only when named.
	diagnostic bool
}

// installPgtrail migrates the database and audits both tables with the pgtrail binary, in mode
// trigger.
func installPgtrail(ctx context.Context, w *writeBench, db string) error {
	return installMode(ctx, w, db, "trigger")
}

// installPgtrailWAL is installPgtrail in mode wal (enable creates the slot).
func installPgtrailWAL(ctx context.Context, w *writeBench, db string) error {
	return installMode(ctx, w, db, "wal")
}

func installMode(ctx context.Context, w *writeBench, db, mode string) error {
	env := append(os.Environ(), "DATABASE_URL="+w.cl.url(db))
	for _, args := range [][]string{{"migrate", "up"}, {"enable", "public.accounts", "--mode", mode}, {"enable", "public.payments", "--mode", mode}} {
		if _, err := runCapture(ctx, env, w.t.pgtrail, args...); err != nil {
			return err
		}
	}
	return nil
}

// scenarios, in the order of the first round; later rounds rotate it.
var scenarios = []*scenario{
	{name: ScenarioNone, label: "no audit"},
	{name: ScenarioPgaudit, label: "pgaudit, pgaudit.log = 'write'", preload: "pgaudit",
		setup: func(ctx context.Context, w *writeBench, db string) error {
			return w.cl.exec(ctx, db, pgauditSQL,
				"ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET pgaudit.log = 'write'")
		}},
	{name: ScenarioPlain, label: "plain row trigger (to_jsonb OLD/NEW, actor, txid → one table)",
		setup: func(ctx context.Context, w *writeBench, db string) error {
			return w.cl.exec(ctx, db, plainTriggerSQL)
		}},
	{name: ScenarioNaive, label: "naive chain (trigger locks one chain-head row, sha256)",
		setup: func(ctx context.Context, w *writeBench, db string) error {
			return w.cl.exec(ctx, db, naiveChainSQL)
		}},
	{name: ScenarioPgtrail, label: "pgtrail (capture trigger → audit.pending; sealer every 200 ms)",
		setup: installPgtrail, sealer: true, pending: true},
	{name: ScenarioPgtrailStream, label: "pgtrail trigger mode, pgtrail stream sealing and archiving to a directory",
		setup: installPgtrail, stream: true, pending: true},
	{name: ScenarioPgtrailWAL, label: "pgtrail WAL mode, pgtrail stream chaining and archiving to a directory",
		setup: installPgtrailWAL, stream: true, wal: true},
	{name: ScenarioPgtrailWALHot, label: "pgtrail WAL mode, hot path alone (nothing reads the slot during the run)",
		setup: installPgtrailWAL, wal: true},
	{name: ScenarioPgtrailNoSealer, label: "diagnostic: pgtrail capture only (no sealer during the run)",
		setup: installPgtrail, pending: true, diagnostic: true},
	{name: ScenarioPgtrailNoIndex, label: "diagnostic: pgtrail without the 4 secondary indexes of audit.events",
		setup: func(ctx context.Context, w *writeBench, db string) error {
			if err := installPgtrail(ctx, w, db); err != nil {
				return err
			}
			return w.cl.exec(ctx, db, `DO $$
DECLARE i regclass;
BEGIN
  FOR i IN SELECT indexrelid::regclass FROM pg_index
            WHERE indrelid = 'audit.events'::regclass AND NOT indisprimary LOOP
    EXECUTE format('DROP INDEX %s', i);
  END LOOP;
END $$`)
		},
		sealer: true, pending: true, diagnostic: true},
}

func scenarioByName(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}

// WriteRun is one scenario at one client count, over all its rounds.
type WriteRun struct {
	Scenario     string             `json:"scenario"`
	Label        string             `json:"label"`
	Clients      int                `json:"clients"`
	TPS          float64            `json:"tps"` // transactions / measured seconds, all rounds
	RoundTPS     []float64          `json:"round_tps"`
	Transactions int64              `json:"transactions"`
	Failed       int64              `json:"failed"`
	MeanMs       float64            `json:"mean_ms"`
	P99Ms        float64            `json:"p99_ms"`
	WALPerTx     float64            `json:"wal_bytes_per_tx"`
	StmtMs       map[string]float64 `json:"statement_ms,omitempty"`
	MachineBusy  float64            `json:"machine_cpu_busy"` // share of all cores, other tenants included
	// pgtrail only.
	SealerCores  float64 `json:"sealer_cores,omitempty"`      // the sealer's backend, in cores, during the runs
	PendingAtEnd int64   `json:"pending_at_end,omitempty"`    // most entries left pending when a round ended
	CatchUp      float64 `json:"sealer_catch_up_s,omitempty"` // longest wait after a round until pending was empty (stream: until chained and archived)
	// Stream scenarios: CPU per audit event of the daemon's process and of the walsender
	// decoding for it, over the runs and their catch-up.
	StreamCPUPerEventUs    float64 `json:"stream_cpu_per_event_us,omitempty"`
	WalsenderCPUPerEventUs float64 `json:"walsender_cpu_per_event_us,omitempty"`
	// Share of the no-audit TPS at the same client count.
	Share   float64 `json:"share"`
	Skipped string  `json:"skipped,omitempty"`
	Error   string  `json:"error,omitempty"`

	seconds   float64   // measured seconds so far
	walBytes  float64   // WAL of the measured rounds
	busySum   float64   // machine busy × seconds
	sealerCPU float64   // seconds
	latencies []float64 // ms, every round's transactions

	streamCPU, walsenderCPU float64 // seconds, stream scenarios
	events                  int64   // audit events of the workload's tables, stream scenarios
}

// WriteResult is part 1.
type WriteResult struct {
	Rounds int         `json:"rounds"`
	Runs   []*WriteRun `json:"runs"`
	Notes  []string    `json:"notes,omitempty"`
}

// writeBench runs part 1.
type writeBench struct {
	cfg    *Config
	cl     *cluster
	t      *tools
	dir    string // logs and pgbench files
	script string // the pgbench script file
}

const templateDB = "bench_template"

// runWrite measures every scenario at every client count. A client count is one block: the
// scenarios take turns in Rounds rounds of Duration/Rounds each, the order rotating from round to
// round, so that the drift of a shared machine spreads over all of them instead of favouring
// whichever ran in a quiet minute.
func runWrite(ctx context.Context, cfg *Config, cl *cluster, t *tools, dir string) (*WriteResult, error) {
	log := cfg.logger().With("part", PartWrite)
	w := &writeBench{cfg: cfg, cl: cl, t: t, dir: dir, script: filepath.Join(dir, "workload.pgbench")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(w.script, []byte(workloadScript), 0o644); err != nil {
		return nil, err
	}
	res := &WriteResult{Rounds: cfg.Rounds}
	if !t.pgaudit {
		res.Notes = append(res.Notes, t.pgauditNote)
	}
	log.Info("loading the template database", "accounts", cfg.Accounts)
	if err := w.makeTemplate(ctx); err != nil {
		return nil, err
	}
	top := slices.Max(cfg.Clients)
	roundTime := cfg.Duration / time.Duration(cfg.Rounds)
	for _, clients := range cfg.Clients {
		var chosen []*scenario
		for _, sc := range scenarios {
			if w.wanted(sc, clients == top) {
				chosen = append(chosen, sc)
			}
		}
		runs := map[string]*WriteRun{}
		for _, sc := range chosen {
			run := &WriteRun{Scenario: sc.name, Label: sc.label, Clients: clients}
			if sc.preload == "pgaudit" && !t.pgaudit {
				run.Skipped = t.pgauditNote
			}
			runs[sc.name] = run
			res.Runs = append(res.Runs, run)
		}
		for round := range cfg.Rounds {
			for i := range chosen {
				sc := chosen[(i+round)%len(chosen)]
				run := runs[sc.name]
				if run.Skipped != "" || run.Error != "" {
					continue
				}
				log.Info("run", "scenario", sc.name, "clients", clients, "round", round+1, "of", cfg.Rounds)
				tps, err := w.round(ctx, sc, run, roundTime, fmt.Sprintf("%s-%d-%d", sc.name, clients, round+1))
				if err != nil {
					if ctx.Err() != nil {
						return res, ctx.Err()
					}
					run.Error = err.Error()
					log.Error("run failed", "scenario", sc.name, "clients", clients, "err", err)
					continue
				}
				log.Info("round", "scenario", sc.name, "clients", clients, "tps", fmt.Sprintf("%.0f", tps))
			}
		}
		for _, sc := range chosen {
			runs[sc.name].finish()
		}
	}
	// Back to the plain configuration for the next parts.
	if err := cl.restart(ctx, nil); err != nil {
		return res, err
	}
	computeShares(res.Runs)
	return res, nil
}

// finish turns the rounds' sums into the run's figures.
func (r *WriteRun) finish() {
	if r.seconds <= 0 || r.Transactions == 0 {
		return
	}
	r.TPS = float64(r.Transactions) / r.seconds
	r.WALPerTx = r.walBytes / float64(r.Transactions)
	r.MachineBusy = r.busySum / r.seconds
	r.SealerCores = r.sealerCPU / r.seconds
	if r.events > 0 {
		r.StreamCPUPerEventUs = r.streamCPU / float64(r.events) * 1e6
		r.WalsenderCPUPerEventUs = r.walsenderCPU / float64(r.events) * 1e6
	}
	r.MeanMs = mean(r.latencies)
	r.P99Ms = percentile(r.latencies, 99)
	r.latencies = nil
}

func (w *writeBench) wanted(sc *scenario, topClients bool) bool {
	if len(w.cfg.Scenarios) == 0 {
		return !sc.diagnostic || (w.cfg.Diagnostics && topClients)
	}
	for _, n := range w.cfg.Scenarios {
		if n == sc.name {
			return true
		}
	}
	return false
}

// makeTemplate creates the database every run copies: the tables, accounts filled, frozen and
// analyzed, so that each run starts from the same data and the same vacuum state.
func (w *writeBench) makeTemplate(ctx context.Context) error {
	if err := w.cl.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+templateDB, "CREATE DATABASE "+templateDB); err != nil {
		return err
	}
	conn, err := w.cl.connect(ctx, templateDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO accounts
		SELECT i, 'owner ' || i, 1000, 'user' || i || '@example.com', timestamptz '2024-01-01 00:00:00+00'
		  FROM generate_series(1, $1::bigint) AS i`, w.cfg.Accounts); err != nil {
		return fmt.Errorf("fill accounts: %w", err)
	}
	if _, err := conn.Exec(ctx, "VACUUM (FREEZE, ANALYZE)"); err != nil {
		return fmt.Errorf("vacuum template: %w", err)
	}
	return nil
}

// round measures one scenario once, for d, on a fresh copy of the template, adds the figures to
// run and returns the round's TPS.
func (w *writeBench) round(ctx context.Context, sc *scenario, run *WriteRun, d time.Duration, name string) (tps float64, err error) {
	extra := map[string]string(nil)
	if sc.preload != "" {
		extra = map[string]string{"shared_preload_libraries": sc.preload}
	}
	if err := w.cl.restart(ctx, extra); err != nil {
		return 0, err
	}
	db := pgx.Identifier{"bench_" + sc.name}.Sanitize()
	if err := w.cl.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)",
		"CREATE DATABASE "+db+" TEMPLATE "+templateDB); err != nil {
		return 0, err
	}
	dbName := "bench_" + sc.name
	defer func() {
		// A database with a replication slot cannot be dropped: the slot goes first (the
		// stream, deferred after this, has stopped by then).
		derr := w.cl.exec(context.Background(), "postgres",
			"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = "+quoteLiteral(dbName),
			"DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
		err = errors.Join(err, derr)
	}()
	if sc.setup != nil {
		if err := sc.setup(ctx, w, dbName); err != nil {
			return 0, fmt.Errorf("set up %s: %w", sc.name, err)
		}
	}
	conn, err := w.cl.connect(ctx, dbName)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `SELECT pg_prewarm(c) FROM unnest(ARRAY['accounts', 'accounts_pkey', 'payments', 'payments_pkey']::regclass[]) AS c`); err != nil {
		return 0, fmt.Errorf("prewarm: %w", err)
	}

	var sealer *proc
	var sealerPID int
	if sc.sealer {
		env := append(os.Environ(), "DATABASE_URL="+w.cl.urlWithApp(dbName, "pgtrail-bench-sealer"))
		sealer, err = startProc(ctx, filepath.Join(w.dir, "sealer-"+name+".log"), nil, env,
			w.t.pgtrail, "seal", "--interval", "200ms")
		if err != nil {
			return 0, err
		}
		defer func() {
			if _, serr := sealer.stop(30 * time.Second); serr != nil && ctx.Err() == nil {
				err = errors.Join(err, fmt.Errorf("sealer: %w", serr))
			}
		}()
		if err := waitFor(ctx, 15*time.Second, 50*time.Millisecond, func() (bool, error) {
			if sealer.exited() {
				return false, errors.New("pgtrail seal exited early; see its log")
			}
			err := conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = 'pgtrail-bench-sealer'`).Scan(&sealerPID)
			if errors.Is(err, pgx.ErrNoRows) {
				return false, nil
			}
			return err == nil, err
		}); err != nil {
			return 0, fmt.Errorf("wait for the sealer's connection: %w", err)
		}
	}

	var stream *proc
	if sc.stream {
		env := append(os.Environ(), "DATABASE_URL="+w.cl.urlWithApp(dbName, "pgtrail-bench-stream"))
		arch := filepath.Join(w.dir, "archive-"+name)
		stream, err = startProc(ctx, filepath.Join(w.dir, "stream-"+name+".log"), nil, env,
			w.t.pgtrail, "stream", "--archive", "file://"+arch, "--unsigned", "--retention", "0", "--seal-interval", "200ms")
		if err != nil {
			return 0, err
		}
		defer func() {
			if _, serr := stream.stop(60 * time.Second); serr != nil && ctx.Err() == nil {
				err = errors.Join(err, fmt.Errorf("stream: %w", serr))
			}
		}()
		if err := waitFor(ctx, 15*time.Second, 50*time.Millisecond, func() (bool, error) {
			if stream.exited() {
				return false, errors.New("pgtrail stream exited early; see its log")
			}
			var active bool
			err := conn.QueryRow(ctx, `SELECT COALESCE((SELECT active FROM pg_replication_slots WHERE database = current_database()), false)`).Scan(&active)
			return active, err
		}); err != nil {
			return 0, fmt.Errorf("wait for the stream's slot: %w", err)
		}
	}

	define := []string{"-D", "accounts=" + strconv.Itoa(w.cfg.Accounts)}
	if w.cfg.Warmup > 0 {
		args := append(pgbenchArgs(run.Clients, w.cfg.Warmup, w.script, ""), define...)
		if _, err := runPgbench(ctx, w.t.pgbench, w.cl.url(dbName), args, "", nil); err != nil {
			return 0, fmt.Errorf("warm-up: %w", err)
		}
	}
	switch {
	case stream != nil:
		if _, err := drainStream(ctx, conn, sc.pending, 120*time.Second); err != nil {
			return 0, fmt.Errorf("stream after warm-up: %w", err)
		}
	case sealer != nil:
		if _, err := drainPending(ctx, conn, 60*time.Second); err != nil {
			return 0, fmt.Errorf("sealer after warm-up: %w", err)
		}
	case sc.wal:
		// Nothing reads the slot during the run: what the warm-up left is chained here.
		env := append(os.Environ(), "DATABASE_URL="+w.cl.url(dbName))
		if _, err := runCapture(ctx, env, w.t.pgtrail, "seal", "--once"); err != nil {
			return 0, fmt.Errorf("seal after warm-up: %w", err)
		}
	case sc.pending:
		env := append(os.Environ(), "DATABASE_URL="+w.cl.url(dbName))
		if _, err := runCapture(ctx, env, w.t.pgtrail, "seal", "--once"); err != nil {
			return 0, fmt.Errorf("seal after warm-up: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}

	var lsn0 string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn0); err != nil {
		return 0, err
	}
	cpu0, _ := readCPUTimes()
	var sealCPU0 time.Duration
	if sealerPID != 0 {
		sealCPU0, _ = procCPU(sealerPID)
	}
	// The stream's CPU: the daemon's process and the server's walsender decoding for it.
	var streamCPU0, walsenderCPU0 time.Duration
	var walsenderPID int
	if stream != nil {
		streamCPU0, _ = procCPU(stream.pid())
		if err := conn.QueryRow(ctx, `SELECT COALESCE((SELECT active_pid FROM pg_replication_slots WHERE database = current_database()), 0)`).Scan(&walsenderPID); err != nil {
			return 0, err
		}
		if walsenderPID != 0 {
			walsenderCPU0, _ = procCPU(walsenderPID)
		}
	}
	start := time.Now()
	prefix := filepath.Join(w.dir, "pgbench-"+name)
	args := append(pgbenchArgs(run.Clients, d, w.script, prefix), define...)
	pb, err := runPgbench(ctx, w.t.pgbench, w.cl.url(dbName), args, prefix, nil)
	if err != nil {
		return 0, err
	}
	if pb.Aborted {
		return 0, fmt.Errorf("pgbench: a client aborted (see %s.*)", prefix)
	}
	elapsed := time.Since(start)
	cpu1, _ := readCPUTimes()
	var catchUp time.Duration
	var pending int64
	var sealCPU time.Duration
	if sealerPID != 0 {
		if c, err := procCPU(sealerPID); err == nil {
			sealCPU = c - sealCPU0
		}
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit.pending").Scan(&pending); err != nil {
			return 0, fmt.Errorf("count pending: %w", err)
		}
		// The WAL of sealing what the round wrote belongs to the round.
		if catchUp, err = drainPending(ctx, conn, 120*time.Second); err != nil {
			return 0, fmt.Errorf("sealer after the run: %w", err)
		}
	}
	var walBytes float64
	if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8", lsn0).Scan(&walBytes); err != nil {
		return 0, err
	}
	if stream != nil {
		// The daemon's and walsender's CPU over the run and its catch-up: all the chaining and
		// archiving of what the round wrote.
		if catchUp, err = drainStream(ctx, conn, sc.pending, 180*time.Second); err != nil {
			return 0, fmt.Errorf("stream after the run: %w", err)
		}
		if c, err := procCPU(stream.pid()); err == nil {
			run.streamCPU += (c - streamCPU0).Seconds()
		}
		if walsenderPID != 0 {
			if c, err := procCPU(walsenderPID); err == nil {
				run.walsenderCPU += (c - walsenderCPU0).Seconds()
			}
		}
		var events int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit.events WHERE resource_type IN ('public.accounts', 'public.payments')`).Scan(&events); err != nil {
			return 0, err
		}
		run.events += events
	}

	// pgbench's TPS leaves out connection time; the measured seconds follow from it.
	secs := float64(pb.Transactions) / pb.TPS
	run.RoundTPS = append(run.RoundTPS, pb.TPS)
	run.Transactions += pb.Transactions
	run.Failed += pb.Failed
	run.seconds += secs
	run.walBytes += walBytes
	run.busySum += busyShare(cpu0, cpu1) * secs
	run.sealerCPU += sealCPU.Seconds() * secs / elapsed.Seconds()
	run.PendingAtEnd = max(run.PendingAtEnd, pending)
	run.CatchUp = max(run.CatchUp, catchUp.Seconds())
	run.latencies = append(run.latencies, pb.latencies...)
	if run.StmtMs == nil {
		run.StmtMs = map[string]float64{}
	}
	// Statement means, weighted by transactions over the rounds.
	for k, v := range pb.StmtMs {
		prev := float64(run.Transactions - pb.Transactions)
		run.StmtMs[k] = (run.StmtMs[k]*prev + v*float64(pb.Transactions)) / float64(run.Transactions)
	}
	return pb.TPS, nil
}

// drainPending waits until audit.pending is empty and returns how long that took.
func drainPending(ctx context.Context, conn *pgx.Conn, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := waitFor(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit.pending").Scan(&n); err != nil {
			return false, err
		}
		return n == 0, nil
	})
	return time.Since(start), err
}

// drainStream waits until the stream has chained and archived everything written so far (the
// slot confirmed the WAL end, and with trigger capture audit.pending is empty) and returns how
// long that took.
func drainStream(ctx context.Context, conn *pgx.Conn, pending bool, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if pending {
		// Sealed first: the entries the sealer appends are then in the WAL before the target.
		if _, err := drainPending(ctx, conn, timeout); err != nil {
			return 0, err
		}
	}
	var target string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		return 0, err
	}
	err := waitFor(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		var done bool
		err := conn.QueryRow(ctx, `SELECT COALESCE((SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE database = current_database()), false)`,
			target).Scan(&done)
		return done, err
	})
	return time.Since(start), err
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// computeShares sets each run's share of the no-audit TPS at its client count.
func computeShares(runs []*WriteRun) {
	ref := map[int]float64{}
	for _, r := range runs {
		if r.Scenario == ScenarioNone && r.Error == "" && r.Skipped == "" && r.TPS > 0 {
			ref[r.Clients] = r.TPS
		}
	}
	for _, r := range runs {
		if base := ref[r.Clients]; base > 0 && r.TPS > 0 {
			r.Share = r.TPS / base
		}
	}
}
