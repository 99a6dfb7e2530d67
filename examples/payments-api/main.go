// Command payments-api is pgtrail's example service: a tiny HTTP API over the demo tables users
// and payments whose every write reaches the audit trail with the actor, client IP, user agent and
// request id of the HTTP request behind it. See package service and README.md.
//
//	payments-api -database-url postgres://... -addr localhost:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/examples/payments-api/service"
)

// shutdownTimeout bounds how long in-flight requests may take to finish after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := run(ctx, log, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Error("payments-api failed", "err", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("payments-api", flag.ContinueOnError)
	databaseURL := fs.String("database-url", "", "PostgreSQL URL or DSN with the audit schema installed (default: $DATABASE_URL, else the libpq PG* variables)")
	addr := fs.String("addr", "localhost:8080", "address to listen on")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs or addresses of reverse proxies whose X-Forwarded-For is believed")
	setup := fs.Bool("setup", true, "create the demo tables and enable auditing on them if needed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	url := *databaseURL
	if url == "" {
		url = os.Getenv("DATABASE_URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("bad database URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "payments-api"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if *setup {
		if err := service.Setup(ctx, pool); err != nil {
			return err
		}
	}
	var trusted []string
	if *proxies != "" {
		trusted = strings.Split(*proxies, ",")
	}
	h, err := service.New(service.Config{Pool: pool, Logger: log, TrustedProxies: trusted})
	if err != nil {
		return err
	}

	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("payments-api listening", "addr", *addr)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
