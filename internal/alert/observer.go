package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/backoff"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/webhook"
)

var _ cdc.Observer = (*Observer)(nil)

// DB is where alerts are recorded as ALERT audit events; *pgxpool.Pool implements it.
type DB interface {
	// Exec runs one statement; an error means the alert was not recorded.
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Options are what an Observer works with besides its rules.
type Options struct {
	// DB records every alert as an ALERT audit event (resource_type alert_rule, resource_id the
	// rule's name, details the alert). nil records none.
	DB DB
	// Logger is scoped with component=alert.
	Logger *slog.Logger
	// Metrics, nil for none.
	Metrics *Metrics
	// Client sends webhooks; nil for one with http.DefaultTransport. Whichever, a redirect is
	// not followed (a 3xx answer is a failure: see webhook.Sender.Post). Each webhook's timeout
	// bounds one attempt.
	Client *http.Client
	// Now is the clock for FiredAt, SkipOlderThan and tampering seen in the WAL; nil: time.Now.
	Now func() time.Time
}

// recordAttempts and recordBackoff: recording an alert is retried a few times while the
// database is unavailable.
const (
	recordAttempts = 5
	recordTimeout  = 10 * time.Second
	recordBackoff  = time.Second
)

// Observer is a cdc.Observer that evaluates the rules on every archived event and delivers each
// alert in the background: to its rule's webhooks, and as an ALERT event. Start it before the
// stream runs and Stop it after. Archived and Tampering never block: each destination has a
// bounded queue, and an alert that finds it full is dropped, logged and counted.
type Observer struct {
	cfg    Config
	engine *Engine
	mu     sync.Mutex // the engine is single-threaded
	log    *slog.Logger
	m      *Metrics
	now    func() time.Time
	db     DB
	sender webhook.Sender

	dests  []*destination
	byRule map[string][]*destination
	record *destination

	ctx       context.Context
	cancel    context.CancelFunc
	quit      chan struct{}
	wg        sync.WaitGroup
	startOnce sync.Once
	stopOnce  sync.Once
	started   atomic.Bool
	stopped   atomic.Bool
}

// destination is one place alerts go, with its queue and retry policy.
type destination struct {
	name        string // webhook:NAME or record
	queue       chan *queued
	send        func(ctx context.Context, q *queued) error // one attempt
	attempts    int
	backoff     time.Duration
	maxBackoff  time.Duration
	lastDropLog atomic.Int64 // unix nanos; drops are logged at most once a second
}

type queued struct {
	alert Alert
	body  []byte
}

// permanentError is a failure to record an alert that retrying cannot fix (a SQL error that is
// not about the connection or the server's state). A webhook's permanent failures are
// webhook.Permanent.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// permanent reports whether a retry cannot fix err, at either kind of destination.
func permanent(err error) bool {
	var perm *permanentError
	return errors.As(err, &perm) || webhook.Permanent(err)
}

// New checks cfg and returns an Observer; nothing runs before Start.
func New(cfg *Config, opts Options) (*Observer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	engine, err := NewEngine(cfg, opts.Now, opts.Metrics)
	if err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	o := &Observer{cfg: c, engine: engine, log: opts.Logger.With("component", "alert"), m: opts.Metrics,
		now: opts.Now, db: opts.DB, sender: webhook.Sender{Client: opts.Client, UserAgent: "pgtrail-alert"},
		byRule: map[string][]*destination{}, quit: make(chan struct{})}
	hooks := map[string]*destination{}
	for _, name := range sortedKeys(c.Webhooks) {
		w := c.Webhooks[name]
		d := &destination{name: "webhook:" + name, queue: make(chan *queued, c.QueueSize),
			attempts: w.MaxAttempts, backoff: w.Backoff, maxBackoff: w.MaxBackoff}
		d.send = func(ctx context.Context, q *queued) error { return o.post(ctx, w, q) }
		hooks[name] = d
		o.dests = append(o.dests, d)
	}
	if o.db != nil {
		o.record = &destination{name: "record", queue: make(chan *queued, c.QueueSize),
			attempts: recordAttempts, backoff: recordBackoff, maxBackoff: 30 * time.Second, send: o.recordAlert}
		o.dests = append(o.dests, o.record)
	}
	for _, r := range c.Rules {
		names := r.Webhooks
		if len(names) == 0 {
			names = c.DefaultWebhooks
		}
		for _, n := range names {
			o.byRule[r.Name] = append(o.byRule[r.Name], hooks[n])
		}
		if o.record != nil {
			o.byRule[r.Name] = append(o.byRule[r.Name], o.record)
		}
	}
	return o, nil
}

// Start runs the delivery workers. ctx supplies values only: deliveries go on after it is
// canceled — alerts raised by the stream's final flush still go out — until Stop.
func (o *Observer) Start(ctx context.Context) {
	o.startOnce.Do(func() {
		o.ctx, o.cancel = context.WithCancel(context.WithoutCancel(ctx))
		o.started.Store(true)
		for _, d := range o.dests {
			o.wg.Add(1)
			go o.run(d)
		}
	})
}

// Stop delivers what is queued, within Config.StopTimeout; what is still queued or in flight
// then is abandoned (logged, counted). Stopping twice, or without a Start, is harmless.
func (o *Observer) Stop() {
	o.stopOnce.Do(func() {
		o.stopped.Store(true)
		if !o.started.Load() {
			return
		}
		close(o.quit)
		done := make(chan struct{})
		go func() { o.wg.Wait(); close(done) }()
		t := time.NewTimer(o.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			o.log.Warn("alert delivery did not finish within the stop timeout; abandoning the rest", "timeout", o.cfg.StopTimeout)
			o.cancel()
			<-done
		}
		o.cancel()
	})
}

// Archived evaluates a durable batch and queues the alerts it fires.
func (o *Observer) Archived(_ context.Context, events []pgtrail.Event) {
	if len(events) == 0 {
		return
	}
	var alerts []Alert
	o.mu.Lock()
	for i := range events {
		alerts = append(alerts, o.engine.Event(&events[i])...)
	}
	o.mu.Unlock()
	for _, a := range alerts {
		o.enqueue(a)
	}
	o.m.seen(events[len(events)-1].Seq)
}

// Tampering evaluates a change to audit.events seen in the WAL and queues the alert it fires.
func (o *Observer) Tampering(_ context.Context, op, seq string) {
	o.mu.Lock()
	alerts := o.engine.WALTampering(op, seq, o.now())
	o.mu.Unlock()
	for _, a := range alerts {
		o.enqueue(a)
	}
}

func (o *Observer) enqueue(a Alert) {
	body, err := json.Marshal(a)
	if err != nil { // cannot happen: Alert has only plain fields
		o.log.Error("encode alert", "rule", a.Rule, "err", err)
		return
	}
	o.log.Warn("ALERT: "+a.Summary, "rule", a.Rule, "severity", a.Severity, "key", a.Key,
		"first_seq", a.FirstSeq, "last_seq", a.LastSeq, "alert_id", a.id)
	q := &queued{alert: a, body: body}
	for _, d := range o.byRule[a.Rule] {
		if o.stopped.Load() {
			o.m.delivery(d.name, ResultAbandoned)
			o.log.Warn("alert raised after stop: not delivered", "destination", d.name, "rule", a.Rule, "alert_id", a.id)
			continue
		}
		select {
		case d.queue <- q:
		default:
			o.m.delivery(d.name, ResultDropped)
			now := time.Now().UnixNano()
			if last := d.lastDropLog.Load(); now-last > int64(time.Second) && d.lastDropLog.CompareAndSwap(last, now) {
				o.log.Error("alert queue full: dropping alerts (see pgtrail_alert_deliveries_total{result=\"dropped\"})",
					"destination", d.name, "queue_size", cap(d.queue), "rule", a.Rule, "alert_id", a.id)
			}
		}
	}
}

// run delivers d's queue until Stop, then what is left in it.
func (o *Observer) run(d *destination) {
	defer o.wg.Done()
	for {
		select {
		case q := <-d.queue:
			o.deliver(d, q)
		case <-o.quit:
			for {
				select {
				case q := <-d.queue:
					o.deliver(d, q)
				default:
					return
				}
			}
		}
	}
}

// deliver tries one alert at one destination, with exponential backoff between attempts.
func (o *Observer) deliver(d *destination, q *queued) {
	log := o.log.With("destination", d.name, "rule", q.alert.Rule, "alert_id", q.alert.id)
	for attempt := 1; ; attempt++ {
		if o.ctx.Err() != nil {
			o.m.delivery(d.name, ResultAbandoned)
			log.Warn("alert not delivered: stopped")
			return
		}
		o.m.attempt(d.name)
		err := d.send(o.ctx, q)
		if err == nil {
			o.m.delivery(d.name, ResultDelivered)
			log.Debug("alert delivered", "attempt", attempt)
			return
		}
		if o.ctx.Err() != nil {
			o.m.delivery(d.name, ResultAbandoned)
			log.Warn("alert not delivered: stopped", "attempt", attempt)
			return
		}
		if permanent(err) || attempt >= d.attempts {
			o.m.delivery(d.name, ResultFailed)
			log.Error("alert not delivered", "attempt", attempt, "err", err)
			return
		}
		wait := webhook.Wait(err, d.backoff, d.maxBackoff, attempt)
		log.Warn("alert delivery failed, retrying", "attempt", attempt, "err", err, "in", wait.Round(time.Millisecond))
		if !backoff.Sleep(o.ctx, wait) {
			o.m.delivery(d.name, ResultAbandoned)
			log.Warn("alert not delivered: stopped while waiting to retry", "attempt", attempt)
			return
		}
	}
}

// post sends one alert to one webhook, once (webhook.Sender.Post says which failures are
// permanent).
func (o *Observer) post(ctx context.Context, w WebhookConfig, q *queued) error {
	return o.sender.Post(ctx, webhook.Message{URL: w.URL, Body: q.body, ID: q.alert.id, Header: w.Headers, Timeout: w.Timeout})
}

// recordAlert writes the alert into the trail as an ALERT event. Rules never evaluate ALERT
// events, so this cannot loop.
func (o *Observer) recordAlert(ctx context.Context, q *queued) error {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	_, err := o.db.Exec(ctx, `SELECT audit.log_event('ALERT', 'alert_rule', $1, 'SUCCESS', $2::jsonb)`, q.alert.Rule, string(q.body))
	if err == nil {
		return nil
	}
	err = fmt.Errorf("record ALERT event: %w", err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !transientSQLState(pgErr.Code) {
		return &permanentError{err}
	}
	return err
}

// transientSQLState: connection problems, shutdowns, lack of resources, serialization failures.
func transientSQLState(code string) bool {
	if len(code) < 2 {
		return true
	}
	switch code[:2] {
	case "08", "40", "53", "57", "58":
		return true
	}
	return false
}
