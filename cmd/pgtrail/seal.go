package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgtrail/pgtrail/chain"
)

func runSeal(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "seal", "seal [--once] [--interval 200ms] [--batch 50000]")
	var db dbFlags
	db.register(fs)
	once := fs.Bool("once", false, "seal what is ready, print how many, and exit")
	interval := fs.Duration("interval", chain.DefaultInterval, "how often to seal (the tamper window of unsealed entries)")
	batch := fs.Int("batch", chain.DefaultBatch, "most entries chained per transaction")
	asJSON := fs.Bool("json", false, "with --once: print the result as JSON")
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
		n, err := chain.SealOnce(ctx, conn, *batch)
		if err != nil {
			return err
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
