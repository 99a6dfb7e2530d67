package cdc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/backoff"
	"github.com/pgtrail/pgtrail/internal/chain"
)

// Stream runs the replication → archive loop. Create it with New, run it with Run.
type Stream struct {
	cfg  Config
	arch Archive
	log  *slog.Logger
	m    *Metrics
	pool *pgxpool.Pool

	// Archive position: everything up to lastSeq is durable; lastHash is its entry hash.
	lastSeq  int64
	lastHash []byte
	// cutAt, when set, is where the next batch must end (a crash interrupted a batch ending there).
	cutAt int64
	// witnessFrom, when set, is the WAL position from which the publication of audit.pending
	// can be read again: until the slot is past it, sessions read the stream's own publication
	// only (witnessMissing).
	witnessFrom pglogrepl.LSN
	// reported: capture problems already recorded by this run (checkCapture).
	reported map[string]bool
}

// New checks cfg and returns a Stream writing to arch.
func New(cfg Config, arch Archive) (*Stream, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream config: %w", err)
	}
	return &Stream{cfg: cfg, arch: arch, log: cfg.Logger.With("slot", cfg.Slot), m: cfg.Metrics, reported: map[string]bool{}}, nil
}

// fatalError marks errors that retrying cannot fix (configuration, schema).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// Run streams until ctx is done (then it flushes within the shutdown timeout and returns nil),
// or, with ExitWhenCaughtUp, until it has archived everything written before it started. It
// returns early only for errors retrying cannot fix: bad configuration, no logical WAL, no
// schema, an archive that refuses the credentials. Outages of PostgreSQL or of the archive are
// retried with backoff for as long as they last.
func (s *Stream) Run(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig)
	if err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop while starting: nothing was read, nothing is lost
		}
		return fmt.Errorf("connect: %w", err)
	}
	err = prepare(ctx, conn, s.cfg.Publication)
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return err
	}
	pcfg.ConnConfig = s.cfg.ConnConfig.Copy()
	// The stream acts as a superuser or pgtrail_sealer: no name it uses may resolve to someone's
	// schema or temporary object.
	pcfg.ConnConfig.RuntimeParams["search_path"] = "pg_catalog, pg_temp"
	pcfg.MaxConns = 4
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer s.pool.Close()

	for attempt := 0; ; attempt++ {
		err := s.resume(ctx)
		if err == nil {
			err = s.session(ctx)
		}
		if errors.Is(err, errWitnessBack) || s.witnessMissing(ctx, err) {
			s.log.Info("restarting the replication session", "reason", err)
			continue
		}
		var fatal *fatalError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &fatal):
			s.log.Error("stream stopped", "err", fatal.err)
			return fatal.err
		case ctx.Err() != nil:
			return nil
		}
		s.m.Errors.WithLabelValues("session").Inc()
		wait := retryWait(attempt)
		s.log.Warn("stream interrupted, retrying", "err", err, "in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// resume reads the archive's position. Non-retryable archive errors (credentials, missing
// bucket) are fatal at this point: nothing can be archived until someone fixes them.
func (s *Stream) resume(ctx context.Context) error {
	st, err := s.arch.Resume(ctx)
	if err != nil {
		if !archive.IsRetryable(err) {
			return &fatalError{fmt.Errorf("archive: %w", err)}
		}
		return fmt.Errorf("archive: %w", err)
	}
	s.lastSeq, s.lastHash, s.cutAt = st.LastSeq, st.LastEntryHash, 0
	if st.PartialBatchLast > st.LastSeq {
		s.cutAt = st.PartialBatchLast
		s.log.Info("completing a batch interrupted by a crash", "through_seq", s.cutAt)
	}
	if s.lastSeq == 0 {
		s.lastHash = pgtrail.GenesisHash
	}
	return nil
}

// session is one replication connection's life. It returns nil when the stream should stop.
func (s *Stream) session(ctx context.Context) error {
	rcfg := s.cfg.ConnConfig.Config.Copy()
	rcfg.RuntimeParams["replication"] = "database"
	rcfg.RuntimeParams["application_name"] = "pgtrail stream"
	// The walsender writes values as text in its session's style: the witness reads occurred_at
	// (witness.go), and row images are built from the texts (images.go), whatever DateStyle and
	// TimeZone the database or the role sets.
	rcfg.RuntimeParams["DateStyle"] = "ISO, YMD"
	rcfg.RuntimeParams["TimeZone"] = "UTC"
	repl, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("replication connect: %w", err)
	}
	defer repl.Close(context.Background())

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	exists, err := slotExists(ctx, conn.Conn(), s.cfg.Slot)
	conn.Release()
	if errors.Is(err, errSlotElsewhere) {
		return &fatalError{err}
	}
	if err != nil {
		return err
	}
	var created bool
	var createdAt string
	if !exists {
		at, err := createSlot(ctx, repl, s.cfg.Slot)
		if err != nil {
			return err
		}
		s.log.Info("created replication slot", "consistent_point", at)
		created, createdAt = true, at
	}
	// What was made while no slot kept the WAL, or while someone else moved it, is lost: say so
	// in the trail.
	slotRecorded, slotTracked, err := s.registerSlot(ctx, created, createdAt)
	if err != nil {
		return err
	}
	if err := s.checkCapture(ctx); err != nil {
		return err
	}
	// Entries sealed before the slot existed (or while it was gone) never come through it: read
	// them from the table. Entries that do come through again are skipped by seq.
	if err := s.backfill(ctx); err != nil {
		return err
	}

	var target pglogrepl.LSN
	if s.cfg.ExitWhenCaughtUp && s.cfg.BeforeCatchUp != nil {
		if err := s.cfg.BeforeCatchUp(ctx); err != nil {
			return err
		}
	}
	if s.cfg.ExitWhenCaughtUp {
		// The target is a message committed synchronously now: that flushes the WAL of earlier
		// asynchronous commits, which decoding cannot see before they are flushed, and the
		// stream is caught up once it has received that commit.
		err := s.pool.QueryRow(ctx, `SELECT (pg_logical_emit_message(true, 'pgtrail', 'catch-up') + 0)::text
		                              FROM set_config('synchronous_commit', 'on', true)`).Scan(lsnScanner{&target})
		if err != nil {
			return fmt.Errorf("read WAL position: %w", err)
		}
	}
	err = pglogrepl.StartReplication(ctx, repl, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + strings.Join(s.publications(), ",") + "'", "messages 'true'"},
	})
	if err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	s.log.Info("streaming", "archived_through_seq", s.lastSeq)
	key, err := s.contextKey(ctx)
	if err != nil {
		return err
	}
	confs, fromWAL, guessed, err := s.loadConfs(ctx, !exists)
	if err != nil {
		return err
	}
	r := &receiver{Stream: s, repl: repl, target: target, relations: map[uint32]*pglogrepl.RelationMessage{},
		walTables: map[uint32]*walTable{}, trigTables: map[uint32]*walTable{}, txSwitchAt: map[uint32]int{},
		outstanding: map[string]*captured{}, confs: confs, confsFromWAL: fromWAL, confsGuessed: guessed, ctxKey: key, dec: newDecoder(),
		slotRecorded: slotRecorded, slotTracked: slotTracked}
	return r.loop(ctx)
}

// backfill archives entries sealed up to the current chain head that the archive lacks.
func (s *Stream) backfill(ctx context.Context) error {
	var head int64
	if err := s.pool.QueryRow(ctx, "SELECT seq FROM audit.chain_head").Scan(&head); err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	return s.fillGap(ctx, head)
}

// fillGap reads entries lastSeq+1..to from audit.events and archives them in batches. They need
// no acknowledgement: their WAL, if still in the slot, is skipped when it arrives.
func (s *Stream) fillGap(ctx context.Context, to int64) error {
	for s.lastSeq < to {
		end := min(to, s.lastSeq+int64(s.cfg.BatchEvents))
		if s.cutAt > s.lastSeq {
			// A batch a crash interrupted is retried exactly as it was begun, whatever its size:
			// the writer refuses any other range. When the table does not hold all of it yet, the
			// receiver completes it from the slot.
			if s.cutAt > to {
				return nil
			}
			end = s.cutAt
		}
		var batch []pgtrail.Event
		err := chain.Read(ctx, s.pool, s.lastSeq+1, end, func(e *pgtrail.Event) error {
			batch = append(batch, *e)
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 || batch[len(batch)-1].Seq != end {
			return fmt.Errorf("audit.events lacks entries %d..%d that the chain head covers", s.lastSeq+1, end)
		}
		s.log.Info("backfilling from the table", "from_seq", s.lastSeq+1, "to_seq", end)
		if err := s.write(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// write archives one contiguous batch, retrying with backoff while the archive is unavailable,
// and advances the archive position.
func (s *Stream) write(ctx context.Context, batch []pgtrail.Event) error {
	s.checkChain(s.lastSeq, s.lastHash, batch)
	if err := s.store(ctx, batch); err != nil {
		return err
	}
	s.advance(ctx, batch)
	return nil
}

// store makes one contiguous batch durable, retrying with backoff while the archive is
// unavailable; it returns only once the batch is durable or ctx is done. It reads and changes no
// archive position, so the receiver's uploader goroutine runs it while the receiver goes on.
func (s *Stream) store(ctx context.Context, batch []pgtrail.Event) error {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := s.arch.WriteBatch(ctx, batch)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, archive.ErrArchiveDiffers) {
			// Someone changed the archive (or the database): rewriting the file would destroy the
			// evidence, and going on would archive after it. Say so in the trail, once, and stop:
			// pgtrail verify all names the entries that differ.
			detail := fmt.Sprintf("batch %d-%d", batch[0].Seq, batch[len(batch)-1].Seq)
			var seen bool
			if qerr := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit.events WHERE action_type = 'TAMPERING' AND resource_type = 'archive' AND resource_id = $1)
			                                  OR EXISTS (SELECT FROM audit.pending WHERE action_type = 'TAMPERING' AND resource_type = 'archive' AND resource_id = $1)`,
				detail).Scan(&seen); qerr == nil && !seen {
				s.m.Tampering.Inc()
				if s.cfg.Observer != nil {
					s.cfg.Observer.Tampering(ctx, "ARCHIVE_DIFFERS", detail)
				}
				if _, qerr := s.pool.Exec(ctx, `SELECT audit.log_event('TAMPERING', 'archive', $1, 'FAILURE', jsonb_build_object('error', $2::text, 'seen_by', 'pgtrail stream'))`,
					detail, err.Error()); qerr != nil {
					s.log.Error("could not record the tampering as an audit event", "err", qerr)
				}
			}
			return &fatalError{fmt.Errorf("TAMPERING: %w; nothing more is archived until someone looks (pgtrail verify all names the entries that differ)", err)}
		}
		if errors.Is(err, archive.ErrBadBatch) {
			// The same batch would be refused again: this stream's idea of the archive is wrong.
			// The session restarts from the archive's own state.
			return err
		}
		s.m.Errors.WithLabelValues("archive").Inc()
		wait := retryWait(attempt)
		s.log.Warn("archive write failed, retrying; the slot keeps the WAL meanwhile", "err", err,
			"retryable", archive.IsRetryable(err), "first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq, "in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	s.m.UploadSeconds.Observe(time.Since(start).Seconds())
	s.m.Batches.Inc()
	s.m.BatchEvents.Observe(float64(len(batch)))
	s.m.Events.Add(float64(len(batch)))
	s.log.Debug("archived batch", "first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq, "events", len(batch),
		"upload", time.Since(start).Round(time.Millisecond))
	return nil
}

// advance moves the archive position past batch, which store has made durable, and tells the
// observer.
func (s *Stream) advance(ctx context.Context, batch []pgtrail.Event) {
	last := batch[len(batch)-1]
	s.lastSeq, s.lastHash = last.Seq, last.EntryHash
	if s.cutAt <= s.lastSeq {
		s.cutAt = 0
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Archived(ctx, append([]pgtrail.Event(nil), batch...))
	}
}

// checkChain recomputes hashes and links as entries go by, batch following prevSeq (whose entry
// hash is prev): the archive gets what the database holds either way, but a break is reported
// the moment it is seen.
func (s *Stream) checkChain(prevSeq int64, prev []byte, batch []pgtrail.Event) {
	var buf []byte
	for i := range batch {
		e := &batch[i]
		var sum [32]byte
		sum, buf = e.Hash(buf)
		if e.Seq != prevSeq+1 || !bytes.Equal(e.PrevHash, prev) || !bytes.Equal(sum[:], e.EntryHash) {
			s.m.ChainBreaks.Inc()
			s.log.Error("CHAIN BREAK: entry does not link to its predecessor or does not match its hash; archiving it as the database holds it",
				"seq", e.Seq, "expected_seq", prevSeq+1)
		}
		prev, prevSeq = e.EntryHash, e.Seq
	}
}

// recordTampering logs, counts and records (as an audit event) a change to the trail seen in the WAL.
func (s *Stream) recordTampering(ctx context.Context, op string, detail string) {
	s.m.Tampering.Inc()
	if s.cfg.Observer != nil {
		s.cfg.Observer.Tampering(ctx, op, detail)
	}
	s.log.Error("TAMPERING: "+op+" on audit.events seen in the WAL (only a superuser with triggers disabled can do this)", "detail", detail)
	_, err := s.pool.Exec(ctx, `SELECT audit.log_event('TAMPERING', 'audit.events', $1, 'FAILURE', jsonb_build_object('operation', $2::text, 'seen_by', 'pgtrail stream'))`, detail, op)
	if err != nil {
		s.log.Error("could not record the tampering as an audit event", "err", err)
	}
}

// retryWait is the wait before retry attempt+1 of a session or an upload: from 100ms to 30s.
func retryWait(attempt int) time.Duration {
	return backoff.Delay(100*time.Millisecond, 30*time.Second, attempt+1)
}

// lsnScanner scans an LSN from its text form.
type lsnScanner struct{ lsn *pglogrepl.LSN }

func (l lsnScanner) Scan(src any) error {
	s, ok := src.(string)
	if !ok {
		return fmt.Errorf("lsn: unexpected %T", src)
	}
	v, err := pglogrepl.ParseLSN(s)
	*l.lsn = v
	return err
}
