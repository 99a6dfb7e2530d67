package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	_ "time/tzdata" // off_hours rules name time zones; a minimal image may have no zoneinfo

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgtrail/pgtrail/internal/alert"
	"github.com/pgtrail/pgtrail/internal/cdc"
)

// alertObserver builds what `pgtrail stream --rules FILE` hangs on the stream: it loads the
// rules (any problem refuses the start, naming the line and field), opens a small pool that
// records alerts as ALERT events, registers the alert metrics with reg and starts delivery.
// stop delivers what is queued (within the rules' stop_timeout) and closes the pool; call it
// after the stream has returned. With no path, it returns a nil Observer and a no-op stop.
func alertObserver(ctx context.Context, e *env, path string, cfg *pgx.ConnConfig, reg prometheus.Registerer, log *slog.Logger) (obs cdc.Observer, stop func(), err error) {
	if path == "" {
		return nil, func() {}, nil
	}
	// ${NAME} in the rules file: unset and empty are both refused.
	lookup := func(k string) (string, bool) { v := e.getenv(k); return v, v != "" }
	rules, err := alert.Load(ctx, path, lookup)
	if err != nil {
		return nil, nil, notRun(fmt.Errorf("--rules: %s", joinErrors(err)))
	}
	pool, err := newPool(ctx, cfg, 2)
	if err != nil {
		return nil, nil, notRun(err)
	}
	o, err := alert.New(rules, alert.Options{DB: pool, Logger: log, Metrics: alert.NewMetrics(reg)})
	if err != nil {
		pool.Close()
		return nil, nil, notRun(fmt.Errorf("--rules: %s", joinErrors(err)))
	}
	o.Start(ctx)
	log.Info("alert rules loaded", "file", path, "rules", len(rules.Rules), "webhooks", len(rules.Webhooks))
	return o, func() { o.Stop(); pool.Close() }, nil
}

// joinErrors puts every problem of a rules file (errors.Join separates them with newlines) on
// one line, separated by "; ".
func joinErrors(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
