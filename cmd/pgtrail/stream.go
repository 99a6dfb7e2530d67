package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/chain"
)

// archiveFlags are the flags that open an archive sink.
type archiveFlags struct {
	url, endpoint, region, retention, lockMode, kmsKey string
	// create: the archive is written (stream), so a missing file:// directory is created
	// (archive.Options.Create); created is told its path.
	create  bool
	created func(dir string)
}

func (a *archiveFlags) register(fsFlags interface {
	StringVar(p *string, name, value, usage string)
}) {
	fsFlags.StringVar(&a.url, "archive", "", "archive URL (required): file:///absolute/dir (created if missing, not its parents) or s3://bucket/prefix")
	fsFlags.StringVar(&a.endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (path-style addressing); empty means AWS")
	fsFlags.StringVar(&a.region, "region", "", "S3 region (default: from the AWS configuration, else us-east-1)")
	fsFlags.StringVar(&a.retention, "retention", "7y", "Object Lock retention of every archived object (e.g. 7y, 400d); 0 for none")
	fsFlags.StringVar(&a.lockMode, "lock-mode", "COMPLIANCE", "Object Lock mode: COMPLIANCE or GOVERNANCE")
	fsFlags.StringVar(&a.kmsKey, "sse-kms-key", "", "encrypt objects with this KMS key id (SSE-KMS)")
}

// open opens the archive. A file:// directory must exist, unless a.create: then it is created
// (not its parents) and a.created is told. Failures are "could not run".
func (a *archiveFlags) open(ctx context.Context) (archive.Sink, error) {
	retention, err := archive.ParseRetention(a.retention)
	if err != nil {
		return nil, notRun(fmt.Errorf("--retention: %w", err))
	}
	if a.url == "" {
		return nil, notRun(errors.New("--archive is required: file:///absolute/dir or s3://bucket/prefix"))
	}
	opts := archive.Options{Endpoint: a.endpoint, Region: a.region, Retention: retention, LockMode: a.lockMode, SSEKMSKeyID: a.kmsKey}
	sink, err := archive.Open(ctx, a.url, opts)
	if errors.Is(err, fs.ErrNotExist) && a.create {
		opts.Create = true
		if sink, err = archive.Open(ctx, a.url, opts); err == nil && a.created != nil {
			if u, perr := archive.ParseURL(a.url); perr == nil {
				a.created(filepath.FromSlash(u.Path))
			}
		}
	}
	if err != nil {
		return nil, notRun(err)
	}
	return sink, nil
}

// markArchive writes the archive's marker (archive.MarkerKey) unless it is there, so that
// verify tells this archive, while still empty, from a wrong URL. An outage is left to the
// stream, which retries the archive with backoff; the marker then follows at the next start.
func markArchive(ctx context.Context, sink archive.Sink, log *slog.Logger) error {
	err := archive.Mark(ctx, sink)
	switch {
	case err == nil:
		return nil
	case archive.IsRetryable(err):
		log.Warn("archive marker not written; the stream retries the archive with backoff", "err", err)
		return nil
	}
	return notRun(err)
}

func runStream(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "stream", "stream --archive URL [flags]")
	var db dbFlags
	db.register(fs)
	af := archiveFlags{create: true}
	af.register(fs)
	signingKey := fs.String("signing-key", "", "ed25519 private key file signing the digests (make one with pgtrail keygen); required unless --unsigned")
	unsigned := fs.Bool("unsigned", false, "write the digests unsigned, for a trial: verify can never check such an archive against a key")
	slot := fs.String("slot", cdc.DefaultSlot, "replication slot name")
	publication := fs.String("publication", cdc.DefaultPublication, "publication name")
	batchEvents := fs.Int("batch-events", cdc.DefaultBatchEvents, "archive a batch at this many events")
	batchBytes := fs.Int("batch-bytes", cdc.DefaultBatchBytes, "archive a batch at this many bytes of row data")
	batchAge := fs.Duration("batch-age", cdc.DefaultBatchAge, "archive a batch when its oldest event has waited this long")
	sealInterval := fs.Duration("seal-interval", chain.DefaultInterval, "run the sealer at this interval in this process; 0 leaves sealing to another process")
	heartbeat := fs.Duration("heartbeat", cdc.DefaultHeartbeatInterval, "write a heartbeat when the database has been idle this long, so the slot does not pin WAL; 0 disables")
	walWarn := fs.Int64("wal-warn-bytes", cdc.DefaultWALWarnBytes, "warn when the slot retains more WAL than this")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on this address (e.g. :9187)")
	shutdown := fs.Duration("shutdown-timeout", cdc.DefaultShutdownTimeout, "on SIGTERM/SIGINT, time allowed to archive what is buffered")
	caughtUp := fs.Bool("exit-when-caught-up", false, "exit 0 once everything written before the start is archived")
	imagesTimeout := fs.Duration("images-timeout", cdc.DefaultImagesTimeout, "tables in mode wal: longest a query typing row images may run (the tables' owners' code runs in it) before its images are kept as text")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	verbose := fs.Bool("v", false, "log every batch")
	rules := fs.String("rules", "", "alert rules file (YAML, see docs/alerts.md): evaluate rules on the stream and POST alerts to webhooks; a bad file refuses the start")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	} else if *logFormat != "text" {
		return notRun(fmt.Errorf("--log-format must be text or json"))
	}
	log := slog.New(handler).With("component", "stream")

	cfg, err := db.config(e)
	if err != nil {
		return err
	}
	// The key before the archive: a refused start leaves no new directory behind.
	var key ed25519.PrivateKey
	switch {
	case *signingKey != "" && *unsigned:
		return notRun(fmt.Errorf("--signing-key and --unsigned: give one"))
	case *signingKey != "":
		if key, err = archive.LoadPrivateKey(ctx, *signingKey); err != nil {
			return notRun(fmt.Errorf("--signing-key: %w", err))
		}
	case *unsigned:
		log.Warn("--unsigned: digests are written unsigned; verify can never check this archive against a key")
	default:
		// An unsigned archive cannot be verified, ever: verify used to blame the public key.
		return notRun(fmt.Errorf("--signing-key is required: make a key with pgtrail keygen (or give --unsigned for a trial archive that verify can never check)"))
	}
	af.created = func(dir string) {
		log.Info("created the archive directory (its parent existed)", "dir", dir)
	}
	sink, err := af.open(ctx)
	if err != nil {
		return err
	}
	if err := markArchive(ctx, sink, log); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := cdc.NewMetrics(reg)
	if *metricsAddr != "" {
		stop, err := serveMetrics(*metricsAddr, reg, log)
		if err != nil {
			return notRun(err)
		}
		defer stop()
	}

	observer, stopAlerts, err := alertObserver(ctx, e, *rules, cfg, reg, slog.New(handler))
	if err != nil {
		return err
	}
	defer stopAlerts() // after Run returns: delivers alerts from the final flush

	streamCfg := cdc.Config{
		ConnConfig: cfg, Slot: *slot, Publication: *publication,
		BatchEvents: *batchEvents, BatchBytes: *batchBytes, BatchAge: *batchAge,
		HeartbeatInterval: *heartbeat, WALWarnBytes: *walWarn, ShutdownTimeout: *shutdown,
		ExitWhenCaughtUp: *caughtUp, ImagesTimeout: *imagesTimeout, Observer: observer, Logger: log, Metrics: metrics,
	}
	if *sealInterval > 0 {
		pool, err := newPool(ctx, cfg, 1)
		if err != nil {
			return notRun(err)
		}
		defer pool.Close()
		if *caughtUp {
			// Seal what is ready first, and again once the stream has started (its start makes
			// entries pending: the DDL of the publication it creates), so "caught up" covers it.
			if _, err := chain.SealOnce(ctx, pool, chain.DefaultBatch); err != nil {
				return notRun(err)
			}
			streamCfg.BeforeCatchUp = func(ctx context.Context) error {
				_, err := chain.SealOnce(ctx, pool, chain.DefaultBatch)
				return err
			}
		}
		s := &chain.Sealer{DB: pool, Interval: *sealInterval, Logger: log.With("component", "sealer")}
		s.Start(ctx)
		defer s.Stop()
	}
	stream, err := cdc.New(streamCfg, &archive.Writer{Sink: sink, Key: key})
	if err != nil {
		return notRun(err)
	}
	if err := stream.Run(ctx); err != nil {
		if errors.Is(err, cdc.ErrNotLogical) || errors.Is(err, cdc.ErrNotInstalled) {
			return notRun(err)
		}
		return err
	}
	return nil
}

// serveMetrics serves /metrics until the returned stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
