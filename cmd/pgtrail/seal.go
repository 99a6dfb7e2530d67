package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/chain"
)

func runSeal(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "seal", "seal [--once] [--interval 200ms] [--batch 50000]\n\n--once returns when every change committed before it started is chained: tables in mode trigger\nfrom audit.pending, tables in mode wal from the replication slot (waiting for a running pgtrail\nstream, or doing its work when none runs). Without --once, it seals audit.pending in a loop.")
	var db dbFlags
	db.register(fs)
	once := fs.Bool("once", false, "seal what is ready, print how many, and exit")
	interval := fs.Duration("interval", chain.DefaultInterval, "how often to seal (the tamper window of unsealed entries)")
	batch := fs.Int("batch", chain.DefaultBatch, "most entries chained per transaction")
	asJSON := fs.Bool("json", false, "with --once: print the result as JSON")
	slot := fs.String("slot", cdc.DefaultSlot, "with --once: the replication slot of tables in mode wal (as pgtrail stream --slot)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *interval <= 0 || *batch <= 0 {
		return notRun(fmt.Errorf("--interval and --batch must be positive"))
	}
	if *once {
		conn, err := db.connect(ctx, e)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		// What trigger capture and audit.log_event left in audit.pending, then tables in mode
		// 'wal', whose changes are in the slot: chained by the stream, or here when none runs.
		n, err := chain.SealOnce(ctx, conn, *batch)
		if err != nil {
			return err
		}
		// Tables in mode wal, or a stream's slot (application events are written to the WAL
		// while one exists, even with every table in mode trigger).
		var wal bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit.audited_tables WHERE mode = 'wal')
		                                 OR EXISTS (SELECT FROM audit.stream_slots s JOIN pg_replication_slots r ON r.slot_name = s.slot
		                                             WHERE s.slot = $1 AND r.database = current_database())`, *slot).Scan(&wal); err != nil {
			return fmt.Errorf("read capture modes (is the schema at version 15? pgtrail migrate up): %w", err)
		}
		if wal {
			cfg, err := db.config(e)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			m, err := cdc.SealOnce(ctx, cdc.Config{ConnConfig: cfg, Slot: *slot, Publication: cdc.DefaultPublication, Logger: log})
			n += m
			if err != nil {
				return err
			}
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(map[string]any{"sealed": n})
		}
		fmt.Fprintf(e.stdout, "sealed %d entries\n", n)
		return nil
	}
	cfg, err := db.config(e)
	if err != nil {
		return err
	}
	pool, err := newPool(ctx, cfg, 1)
	if err != nil {
		return notRun(err)
	}
	defer pool.Close()
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("component", "sealer")
	var total int64
	s := &chain.Sealer{DB: pool, Interval: *interval, Batch: *batch, Logger: log,
		OnSeal: func(n int64) { total += n }}
	log.Info("sealing", "interval", *interval)
	s.Start(ctx)
	<-ctx.Done()
	s.Stop()
	log.Info("stopped", "sealed", total, "at", time.Now().Format(time.RFC3339))
	return nil
}
