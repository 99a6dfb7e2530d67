// Command pgtrail-bench runs pgtrail's benchmark (see package bench): make bench runs it in full,
// make bench-smoke with -smoke.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgtrail/pgtrail/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtrail-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pgtrail-bench", flag.ContinueOnError)
	smoke := fs.Bool("smoke", false, "every part with tiny sizes, a few seconds each (make bench-smoke)")
	parts := fs.String("parts", "", "comma-separated parts to run: write,stream,verify (default: all)")
	clients := fs.String("clients", "", "pgbench client counts, e.g. 1,4,8")
	duration := fs.Duration("duration", 0, "measured pgbench time per scenario and client count, over all rounds (e.g. 30s)")
	rounds := fs.Int("rounds", 0, "the write scenarios take turns this many times, -duration/-rounds each")
	warmup := fs.Duration("warmup", -1, "unmeasured pgbench run before each measured one; 0 for none")
	scenarios := fs.String("scenarios", "", "comma-separated write scenarios: none,pgaudit,plain,naive,pgtrail,pgtrail-trigger-stream,pgtrail-wal-stream,pgtrail-wal-hot-path (default: these), and the diagnostics pgtrail-no-sealer,pgtrail-no-secondary-indexes")
	accounts := fs.Int("accounts", 0, "rows in accounts")
	backlogs := fs.String("backlogs", "", "stream backlog sizes in events, e.g. 250000,1000000")
	lagRate := fs.Int("lag-rate", 0, "events per second for the lag measurement")
	lagDuration := fs.Duration("lag-duration", 0, "how long the lag load runs")
	lagArgs := fs.String("lag-stream-args", "", "extra pgtrail stream flags for the lag runs, space-separated, e.g. \"-v --batch-age 250ms\"")
	lagModes := fs.String("lag-modes", "", "capture modes the lag is measured in, e.g. trigger,wal (default: both)")
	results := fs.String("results", "", "directory for <timestamp>.md/.json and latest.md (default bench/results; .cache/bench-smoke with -smoke)")
	noDiag := fs.Bool("no-diagnostics", false, "skip the diagnostic write scenarios at the highest client count")
	noInstall := fs.Bool("no-install", false, "do not apt-get install pgaudit when it is missing")
	pgtrailBin := fs.String("pgtrail", "", "use this pgtrail binary instead of building ./cmd/pgtrail into .cache/bin")
	keep := fs.Bool("keep", false, "keep the work directory (cluster, archives, logs)")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg := bench.Full()
	if *smoke {
		cfg = bench.Smoke()
	}
	cfg.Root, cfg.Keep, cfg.Pgtrail = root, *keep, *pgtrailBin
	cfg.ResultsDir = filepath.Join(root, "bench", "results")
	if *smoke {
		cfg.ResultsDir = filepath.Join(root, ".cache", "bench-smoke")
	}
	if *results != "" {
		cfg.ResultsDir = *results
	}
	if *parts != "" {
		cfg.Parts = splitList(*parts)
	}
	if *clients != "" {
		if cfg.Clients, err = intList(*clients); err != nil {
			return fmt.Errorf("-clients: %w", err)
		}
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	if *warmup >= 0 {
		cfg.Warmup = *warmup
	}
	if *scenarios != "" {
		cfg.Scenarios = splitList(*scenarios)
	}
	if *accounts > 0 {
		cfg.Accounts = *accounts
	}
	if *backlogs != "" {
		if cfg.Backlogs, err = intList(*backlogs); err != nil {
			return fmt.Errorf("-backlogs: %w", err)
		}
	}
	if *lagRate > 0 {
		cfg.LagRate = *lagRate
	}
	if *lagDuration > 0 {
		cfg.LagDuration = *lagDuration
	}
	cfg.LagStreamArgs = strings.Fields(*lagArgs)
	if *lagModes != "" {
		cfg.LagModes = splitList(*lagModes)
	}
	if *noDiag {
		cfg.Diagnostics = false
	}
	if *noInstall {
		cfg.InstallPgaudit = false
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	start := time.Now()
	res, err := bench.Run(ctx, cfg)
	if res == nil {
		return err
	}
	fmt.Println(bench.Markdown(res))
	fmt.Printf("results: %s (%s)\n", filepath.Join(cfg.ResultsDir, "latest.md"), time.Since(start).Round(time.Second))
	if missing := bench.Incomplete(res); len(missing) > 0 {
		return fmt.Errorf("%d measurement(s) missing:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
	return err
}

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the pgtrail module (no go.mod above the working directory)")
		}
		dir = parent
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
