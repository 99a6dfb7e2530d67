package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/archive"
)

const (
	// lagEventsPerTx: each load transaction updates 5 accounts and inserts 5 payments.
	lagEventsPerTx = 10
	// lagWorkers is how many connections carry the load; commits overlap as they would in an app.
	lagWorkers = 4
	// lagPoll is how often the archive is listed for new objects.
	lagPoll = 25 * time.Millisecond
	// lagSettle bounds the wait for the last transactions to reach the archive.
	lagSettle = 60 * time.Second
)

// lag runs a steady load against the database while `pgtrail stream` (with its sealer and default
// batching) archives it, and measures per transaction the time from its commit (as the client
// saw it) to the first listing of an archive object holding its events.
func (s *streamBench) lag(ctx context.Context, tg *target, lr *LagRun) error {
	d, err := s.startDaemon(ctx, tg)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			d.p.stop(30 * time.Second)
		}
	}()
	sink, err := s.sinkFor(ctx, tg)
	if err != nil {
		return err
	}
	// The slot may hold what was written since this archive last ran (the other sink's lag run):
	// measure from a caught-up daemon.
	if err := s.waitArchived(ctx, d, sink); err != nil {
		return err
	}
	// Start every sink from the same state. audit.pending has no index: the sealer scans it whole,
	// dead rows included, so the rows the previous run (or the backlog) left dead slow sealing
	// down until autovacuum gets to them — the run after another would pay for it. And a
	// checkpoint left running by the backlog would land in one sink's run and not the other's.
	if err := s.cl.exec(ctx, streamDB, "VACUUM audit.pending", "CHECKPOINT"); err != nil {
		return err
	}
	w := newArchiveWatcher(sink)
	if err := w.prime(ctx); err != nil {
		return err
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollErr := make(chan error, 1)
	go func() { pollErr <- w.run(pollCtx) }()
	defer stopPoll()

	commits, elapsed, err := s.steadyLoad(ctx, s.cfg.LagRate, s.cfg.LagDuration)
	if err != nil {
		return err
	}
	lr.Transactions = len(commits)
	lr.Rate = float64(len(commits)*lagEventsPerTx) / elapsed.Seconds()
	// Wait for the tail to arrive.
	deadline := time.Now().Add(lagSettle)
	for time.Now().Before(deadline) && w.missing(commits) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopPoll()
	if err := <-pollErr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	var lags []float64
	var csv strings.Builder
	csv.WriteString("commit_unix_ms,lag_ms\n")
	for txid, c := range commits {
		seen, ok := w.seenAt(txid)
		if !ok {
			lr.Missing++
			continue
		}
		lags = append(lags, seen.Sub(c).Seconds())
		fmt.Fprintf(&csv, "%d,%d\n", c.UnixMilli(), seen.Sub(c).Milliseconds())
	}
	// Per transaction, for a look at the lag over time (kept with -keep).
	_ = os.WriteFile(filepath.Join(s.dir, "lag-"+tg.name+".csv"), []byte(csv.String()), 0o644)
	lr.P50, lr.P99, lr.Max = percentile(lags, 50), percentile(lags, 99), percentile(lags, 100)
	lr.WatcherMaxPoll = w.maxPoll.Seconds()
	m, err := d.scrape(ctx)
	if err != nil {
		return err
	}
	if h := m.histograms["pgtrail_stream_commit_to_durable_seconds"]; h != nil {
		lr.HistP50, lr.HistP99 = h.quantile(0.5), h.quantile(0.99)
	}
	if h := m.histograms["pgtrail_stream_upload_seconds"]; h != nil {
		lr.Batches, lr.UploadP50, lr.UploadP99 = h.count, h.quantile(0.5), h.quantile(0.99)
	}
	stopped = true
	pr, err := d.p.stop(30 * time.Second)
	lr.PeakRSS = pr.PeakRSS
	if err != nil {
		return err
	}
	if lr.Missing > 0 {
		return fmt.Errorf("%d of %d transactions did not reach the archive within %s", lr.Missing, len(commits), lagSettle)
	}
	return nil
}

// waitArchived waits until the archive holds everything sealed so far.
func (s *streamBench) waitArchived(ctx context.Context, d *daemon, sink archive.Sink) error {
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var head int64
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT seq, pg_current_wal_lsn()::text FROM audit.chain_head").Scan(&head, &lsn); err != nil {
		return err
	}
	// Both: the entries (the daemon may read them from the table) and the WAL behind them (which
	// it then decodes to skip them) — until then new commits wait behind that WAL.
	err = waitFor(ctx, 10*time.Minute, 100*time.Millisecond, func() (bool, error) {
		if d.p.exited() {
			return false, errors.New("pgtrail stream exited")
		}
		last, err := archivedThrough(ctx, sink)
		if err != nil || last < head {
			return false, err
		}
		var decoded bool
		err = conn.QueryRow(ctx, `SELECT COALESCE(bool_and(r.sent_lsn >= $1::pg_lsn), false) FROM pg_replication_slots s
			JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $2`, lsn, d.slot).Scan(&decoded)
		return decoded, err
	})
	if err != nil {
		return fmt.Errorf("wait for the daemon to catch up to seq %d and WAL %s: %w", head, lsn, err)
	}
	return nil
}

// archivedThrough returns the last seq of the archive's last complete batch, from its digest keys.
func archivedThrough(ctx context.Context, sink archive.Sink) (int64, error) {
	keys, err := sink.List(ctx, archive.DigestsPrefix)
	if err != nil {
		return 0, fmt.Errorf("list archive digests: %w", err)
	}
	var last int64
	for _, k := range keys {
		if _, l, _, ok := archive.ParseDigestKey(k); ok {
			last = max(last, l)
		}
	}
	return last, nil
}

// steadyLoad commits rate/lagEventsPerTx transactions per second for d, open loop (each has a
// scheduled start; a late worker does not skip), and returns each transaction's commit time by
// transaction id, and how long the load took.
func (s *streamBench) steadyLoad(ctx context.Context, rate int, d time.Duration) (map[uint64]time.Time, time.Duration, error) {
	pool, err := pgxpool.New(ctx, s.cl.urlWithApp(streamDB, "pgtrail-bench-load"))
	if err != nil {
		return nil, 0, err
	}
	defer pool.Close()
	txPerSec := float64(rate) / lagEventsPerTx
	total := max(1, int(txPerSec*d.Seconds()))
	interval := time.Duration(float64(time.Second) / txPerSec)
	var (
		next    atomic.Int64
		mu      sync.Mutex
		commits = make(map[uint64]time.Time, total)
	)
	start := time.Now().Add(50 * time.Millisecond)
	errc := make(chan error, lagWorkers)
	for range lagWorkers {
		go func() {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Release()
			for {
				k := int(next.Add(1) - 1)
				if k >= total {
					errc <- nil
					return
				}
				if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
					select {
					case <-ctx.Done():
						errc <- ctx.Err()
						return
					case <-time.After(wait):
					}
				}
				txid, err := loadTx(ctx, conn.Conn(), 1+(k*5)%max(1, s.cfg.Accounts-5))
				if err != nil {
					errc <- err
					return
				}
				now := time.Now()
				mu.Lock()
				commits[txid] = now
				mu.Unlock()
			}
		}()
	}
	var errs []error
	for range lagWorkers {
		errs = append(errs, <-errc)
	}
	return commits, time.Since(start), errors.Join(errs...)
}

// loadTx commits one load transaction (a pipeline is one implicit transaction) and returns its id.
func loadTx(ctx context.Context, conn *pgx.Conn, account int) (uint64, error) {
	b := &pgx.Batch{}
	var txid string
	b.Queue("SELECT pg_current_xact_id()::text").QueryRow(func(r pgx.Row) error { return r.Scan(&txid) })
	b.Queue("UPDATE accounts SET balance = balance + 1, updated_at = now() WHERE id BETWEEN $1 AND $1 + 4", account)
	b.Queue("INSERT INTO payments (account_id, amount, created_at) SELECT $1 + g, 1, now() FROM generate_series(0, 4) AS g", account)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("load transaction: %w", err)
	}
	id, err := strconv.ParseUint(txid, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("load transaction id %q: %w", txid, err)
	}
	return id, nil
}

// archiveWatcher lists an archive and remembers when each transaction's events first appeared.
type archiveWatcher struct {
	sink    archive.Sink
	mu      sync.Mutex
	keys    map[string]bool
	seen    map[uint64]time.Time
	maxPoll time.Duration // the slowest poll: a slow watcher inflates the measured lag
}

func newArchiveWatcher(sink archive.Sink) *archiveWatcher {
	return &archiveWatcher{sink: sink, keys: map[string]bool{}, seen: map[uint64]time.Time{}}
}

func (w *archiveWatcher) run(ctx context.Context) error {
	t := time.NewTicker(lagPoll)
	defer t.Stop()
	for {
		start := time.Now()
		if err := w.poll(ctx); err != nil {
			return err
		}
		w.mu.Lock()
		w.maxPoll = max(w.maxPoll, time.Since(start))
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// prime marks the objects already in the archive as known without reading them: they hold
// earlier events, not the load's.
func (w *archiveWatcher) prime(ctx context.Context) error {
	keys, err := w.sink.List(ctx, "events/")
	if err != nil {
		return fmt.Errorf("list archive: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.keys[k] = true
	}
	return nil
}

// poll reads the data objects that appeared since the last poll.
func (w *archiveWatcher) poll(ctx context.Context) error {
	keys, err := w.sink.List(ctx, "events/")
	if err != nil {
		return fmt.Errorf("list archive: %w", err)
	}
	now := time.Now()
	for _, k := range keys {
		w.mu.Lock()
		known := w.keys[k]
		w.mu.Unlock()
		if known {
			continue
		}
		data, err := w.sink.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		evs, err := archive.DecodeParquet(data)
		if err != nil {
			return fmt.Errorf("read archive %s: %w", k, err)
		}
		w.mu.Lock()
		w.keys[k] = true
		for i := range evs {
			if _, ok := w.seen[evs[i].TxID]; !ok {
				w.seen[evs[i].TxID] = now
			}
		}
		w.mu.Unlock()
	}
	return nil
}

func (w *archiveWatcher) seenAt(txid uint64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.seen[txid]
	return t, ok
}

func (w *archiveWatcher) missing(commits map[uint64]time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for txid := range commits {
		if _, ok := w.seen[txid]; !ok {
			n++
		}
	}
	return n
}
