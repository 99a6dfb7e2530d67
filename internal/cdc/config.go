// Package cdc is the stream daemon's engine: it reads the WAL over logical replication
// (pgoutput): the changes of tables in mode wal with their signed context, application events,
// and the entries the SQL sealer chains for tables in mode trigger. It chains what is not chained
// yet into audit.events, hands each batch to the archive, and acknowledges to PostgreSQL only what
// is in audit.events and durable in the archive. docs/architecture.md follows one change through.
package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// Archive is where batches go; *archive.Writer implements it.
type Archive interface {
	// Resume reads where the archive stands: the last complete batch, and the end of a batch a
	// crash interrupted (which the next batch must end at exactly, so the retry rewrites the
	// same objects).
	Resume(ctx context.Context) (archive.ResumeState, error)
	// WriteBatch makes a contiguous run of events durable. A failed call may have written part
	// of the batch; calling it again with the same events completes it.
	WriteBatch(ctx context.Context, events []pgtrail.Event) error
}

// Observer is told what the stream archives and what tampering it sees (real-time alert rules
// hang here). Calls come from the stream's goroutine, in seq order: an implementation must not
// block for long — queue and return.
type Observer interface {
	// Archived is called with each batch after it is durable. The slice is not reused.
	Archived(ctx context.Context, events []pgtrail.Event)
	// Tampering is called for an UPDATE, DELETE or TRUNCATE of audit.events seen in the WAL;
	// seq is the affected entry's seq when known.
	Tampering(ctx context.Context, op, seq string)
}

// Defaults for Config.
const (
	DefaultSlot        = "pgtrail"
	DefaultPublication = "pgtrail"
	DefaultBatchEvents = 10000
	DefaultBatchBytes  = 64 << 20
	// DefaultBatchAge bounds the commit-to-durable lag: 200ms keeps its p99 under a second at
	// 5,000 events/s on 2 cores (500ms gave 1.3-1.7s; make bench, part 2). A busy stream then
	// writes up to five batches a second; raise it where the archive's object count matters
	// more than lag.
	DefaultBatchAge          = 200 * time.Millisecond
	DefaultStandbyInterval   = 10 * time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultWALWarnBytes      = 1 << 30
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultImagesTimeout     = 30 * time.Second
	DefaultWitnessAge        = 30 * time.Second
)

// Config configures a Stream.
type Config struct {
	// ConnConfig is the database; the replication connection is derived from it.
	ConnConfig *pgx.ConnConfig
	// Slot and Publication name the permanent replication slot and the publication.
	Slot, Publication string
	// A batch is archived when it holds BatchEvents events or BatchBytes bytes of row data, or
	// its oldest event has waited BatchAge; always at a transaction boundary.
	BatchEvents int
	BatchBytes  int
	BatchAge    time.Duration
	// StandbyInterval is how often standby status is sent even without news.
	StandbyInterval time.Duration
	// HeartbeatInterval: when nothing arrived for this long, a transactional logical message is
	// written so an idle database still moves the slot forward. 0 disables heartbeats.
	HeartbeatInterval time.Duration
	// WALWarnBytes: warn when the slot retains more WAL than this.
	WALWarnBytes int64
	// ShutdownTimeout bounds the final flush on stop.
	ShutdownTimeout time.Duration
	// ImagesTimeout bounds one query building row images of tables in mode wal (code of the
	// tables' owners runs in it); past it the query's backend is terminated and the images are
	// built from the column texts.
	ImagesTimeout time.Duration
	// WitnessAge: an entry captured into audit.pending and not seen sealed after this long is
	// looked for; one in neither audit.pending nor audit.events was deleted before it was sealed.
	WitnessAge time.Duration
	// ExitWhenCaughtUp makes Run return once everything written before it started is archived.
	ExitWhenCaughtUp bool
	// BeforeCatchUp, with ExitWhenCaughtUp, runs just before the WAL position to catch up to is
	// taken: the caller's sealer seals there what the stream's start made pending (the DDL of
	// the publication it creates), so that "caught up" covers it and it is not left unarchived.
	BeforeCatchUp func(context.Context) error
	// Observer, when set, sees every batch once it is durable and every tampering seen in the WAL.
	Observer Observer
	Logger   *slog.Logger
	Metrics  *Metrics
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Slot == "" {
		c.Slot = DefaultSlot
	}
	if c.Publication == "" {
		c.Publication = DefaultPublication
	}
	if c.BatchEvents == 0 {
		c.BatchEvents = DefaultBatchEvents
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchAge == 0 {
		c.BatchAge = DefaultBatchAge
	}
	if c.StandbyInterval == 0 {
		c.StandbyInterval = DefaultStandbyInterval
	}
	if c.WALWarnBytes == 0 {
		c.WALWarnBytes = DefaultWALWarnBytes
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ImagesTimeout == 0 {
		c.ImagesTimeout = DefaultImagesTimeout
	}
	if c.WitnessAge == 0 {
		c.WitnessAge = DefaultWitnessAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	var errs []error
	if c.ConnConfig == nil {
		errs = append(errs, errors.New("database connection: not set"))
	}
	if !identRE.MatchString(c.Slot) {
		errs = append(errs, fmt.Errorf("slot %q: use lower-case letters, digits and _", c.Slot))
	}
	if !identRE.MatchString(c.Publication) {
		errs = append(errs, fmt.Errorf("publication %q: use lower-case letters, digits and _", c.Publication))
	}
	if c.BatchEvents < 1 || c.BatchBytes < 1 || c.BatchAge <= 0 {
		errs = append(errs, fmt.Errorf("batch limits must be positive (events %d, bytes %d, age %s)", c.BatchEvents, c.BatchBytes, c.BatchAge))
	}
	if c.StandbyInterval <= 0 || c.ShutdownTimeout <= 0 || c.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("standby interval and shutdown timeout must be positive, heartbeat interval not negative"))
	}
	return errors.Join(errs...)
}
