package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/archive"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
)

const (
	// lagEventsPerTx: each load transaction updates 5 accounts and inserts 5 payments.
	lagEventsPerTx = 10
	// lagWorkers is how many connections carry the load; commits overlap as they would in an app.
	lagWorkers = 4
	// lagPoll is how often the archive is listed for new digests.
	lagPoll = 25 * time.Millisecond
	// lagSettle bounds the wait for the last transactions to reach the archive.
	lagSettle = 60 * time.Second
)

// lag runs a steady load against the database while `pgtrail stream` (with its sealer and default
// batching) archives it, and measures per transaction the time from its commit (as the client
// saw it) to the first poll that finds the batch holding its last entry complete in the archive
// (data files and every digest written: what the daemon waits for before acknowledging).
func (s *streamBench) lag(ctx context.Context, tg *target, lr *LagRun) error {
	d, err := s.startDaemon(ctx, tg, s.cfg.LagStreamArgs...)
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
	// Entries after this one are the load's (and the sealer's heartbeats).
	startSeq, err := archivedThrough(ctx, sink)
	if err != nil {
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
	// Wait for the tail to arrive: sealed, then archived.
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// Until every load transaction is chained (in mode wal nothing waits in audit.pending, so an
	// empty pending table says nothing) and the archive holds the last of them.
	txids := make([]int64, 0, len(commits))
	for txid := range commits {
		txids = append(txids, int64(txid))
	}
	err = waitFor(ctx, lagSettle, 100*time.Millisecond, func() (bool, error) {
		var chained int
		var last int64
		if err := conn.QueryRow(ctx, "SELECT count(DISTINCT txid), COALESCE(max(seq), 0) FROM audit.events WHERE seq > $1 AND txid::text::bigint = ANY($2)",
			startSeq, txids).Scan(&chained, &last); err != nil {
			return false, err
		}
		return chained == len(txids) && w.through() >= last, nil
	})
	stopPoll()
	if perr := <-pollErr; perr != nil && !errors.Is(perr, context.Canceled) {
		return perr
	}
	if err != nil && ctx.Err() != nil {
		return err
	}
	// Each transaction is durable once the batch holding its last entry is.
	lastSeq := make(map[uint64]int64, len(commits))
	rows, err := conn.Query(ctx, "SELECT txid::text::bigint, max(seq) FROM audit.events WHERE seq > $1 GROUP BY txid", startSeq)
	if err != nil {
		return err
	}
	for rows.Next() {
		var txid, seq int64
		if err := rows.Scan(&txid, &seq); err != nil {
			return err
		}
		lastSeq[uint64(txid)] = seq
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var lags []float64
	var csv strings.Builder
	csv.WriteString("commit_unix_ms,lag_ms\n")
	for txid, c := range commits {
		seq, ok := lastSeq[txid]
		var seen time.Time
		if ok {
			seen, ok = w.seenAt(seq)
		}
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

// archiveWatcher polls an archive's digests and remembers when each batch became complete: every
// row of its seq range covered by a digest, which the daemon writes only after the batch's data
// files are durable — the point where it acknowledges the batch to PostgreSQL. A poll lists only
// digest keys after the last complete batch and reads each new digest (a few hundred bytes); it
// reads no data file, so the watcher neither waits for nor competes with the daemon much.
type archiveWatcher struct {
	sink archive.Sink
	list func(ctx context.Context, after string) ([]string, error)

	mu      sync.Mutex
	after   string             // list digest keys after this one: every batch up to it is complete
	got     map[string]bool    // digests read since
	rows    map[[2]int64]int64 // rows seen per batch range
	batches []completedBatch   // in seq order
	maxPoll time.Duration      // the slowest poll: a slow watcher inflates the measured lag
}

// completedBatch is a batch and the first poll that saw it complete.
type completedBatch struct {
	first, last int64
	at          time.Time
}

func newArchiveWatcher(sink archive.Sink) *archiveWatcher {
	w := &archiveWatcher{sink: sink, got: map[string]bool{}, rows: map[[2]int64]int64{}}
	w.list = func(ctx context.Context, after string) ([]string, error) {
		keys, err := sink.List(ctx, archive.DigestsPrefix)
		if err != nil {
			return nil, err
		}
		i, _ := slices.BinarySearch(keys, after)
		for i < len(keys) && keys[i] <= after {
			i++
		}
		return keys[i:], nil
	}
	if s, ok := sink.(*s3sink.Sink); ok {
		// Only what follows: a listing from the start would grow with the archive.
		w.list = func(ctx context.Context, after string) ([]string, error) {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket()), Prefix: aws.String(s.ObjectKey(archive.DigestsPrefix))}
			if after != "" {
				in.StartAfter = aws.String(s.ObjectKey(after))
			}
			base := strings.TrimSuffix(s.ObjectKey(archive.DigestsPrefix), archive.DigestsPrefix)
			var keys []string
			for p := s3.NewListObjectsV2Paginator(s.Client(), in); p.HasMorePages(); {
				page, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				for _, o := range page.Contents {
					keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), base))
				}
			}
			return keys, nil
		}
	}
	return w
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

// prime skips the batches already in the archive: they hold earlier events, not the load's.
func (w *archiveWatcher) prime(ctx context.Context) error {
	keys, err := w.list(ctx, "")
	if err != nil {
		return fmt.Errorf("list archive digests: %w", err)
	}
	if len(keys) > 0 {
		w.after = batchEnd(keys[len(keys)-1])
	}
	return nil
}

// batchEnd returns a key that sorts after every digest key of key's batch and before the next
// batch's: digest names are digits, and '~' sorts after them.
func batchEnd(key string) string {
	return key[:strings.LastIndexByte(key, '/')+1] + "~"
}

// poll reads the digests that appeared since the last complete batch.
func (w *archiveWatcher) poll(ctx context.Context) error {
	keys, err := w.list(ctx, w.after)
	if err != nil {
		return fmt.Errorf("list archive digests: %w", err)
	}
	now := time.Now()
	for _, k := range keys {
		if w.got[k] {
			continue
		}
		first, last, _, ok := archive.ParseDigestKey(k)
		if !ok {
			return fmt.Errorf("unexpected archive object %s", k)
		}
		data, err := w.sink.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		d, err := archive.ParseDigest(data)
		if err != nil {
			return fmt.Errorf("read archive %s: %w", k, err)
		}
		w.got[k] = true
		r := [2]int64{first, last}
		w.rows[r] += d.Rows
		if w.rows[r] == last-first+1 {
			w.mu.Lock()
			w.batches = append(w.batches, completedBatch{first: first, last: last, at: now})
			w.mu.Unlock()
			w.after = batchEnd(k)
		}
	}
	return nil
}

// through returns the last seq of the complete batches seen, 0 if none.
func (w *archiveWatcher) through() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.batches) == 0 {
		return 0
	}
	return w.batches[len(w.batches)-1].last
}

// seenAt returns when the batch holding seq was first seen complete.
func (w *archiveWatcher) seenAt(seq int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, _ := slices.BinarySearchFunc(w.batches, seq, func(b completedBatch, seq int64) int { return cmp.Compare(b.last, seq) })
	if i == len(w.batches) || w.batches[i].first > seq {
		return time.Time{}, false
	}
	return w.batches[i].at, true
}
