package retention

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// Errors Prune returns before it changes anything, for callers that report them as "could not
// run".
var (
	// ErrNotSuperuser: dropping partitions of the audit schema needs a superuser.
	ErrNotSuperuser = errors.New("pruning needs a superuser: the audit schema refuses DDL to anyone else")
	// ErrNoSigningKey: a prune must leave a signed anchor.
	ErrNoSigningKey = errors.New("pruning needs the archive's signing key: the anchor it leaves is signed")
)

// PruneConfig configures Prune.
type PruneConfig struct {
	// OlderThan: partitions whose whole month ended at least this long ago are candidates.
	OlderThan timeexpr.Age
	// Now is the reference time; zero means time.Now().
	Now time.Time
	// Sink is the archive that must hold every pruned entry.
	Sink archive.Sink
	// ArchiveURL names Sink in the anchor and the PRUNE event.
	ArchiveURL string
	// Key signs the anchor; required unless DryRun.
	Key ed25519.PrivateKey
	// DryRun checks everything and reports, and changes nothing.
	DryRun bool
	// LockTimeout bounds the wait for the locks the drop needs (readers of audit.events hold
	// them briefly); 0 means 10 seconds.
	LockTimeout time.Duration
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Validate names the first bad field.
func (c *PruneConfig) Validate() error {
	switch {
	case c.OlderThan.IsZero():
		return errors.New("prune: OlderThan must be set (e.g. 13mo)")
	case c.Sink == nil:
		return errors.New("prune: Sink (the archive) must be set: only archived entries are pruned")
	case !c.DryRun && c.Key == nil:
		return ErrNoSigningKey
	case c.LockTimeout < 0:
		return errors.New("prune: LockTimeout must not be negative")
	}
	return nil
}

// Action says what happens to a candidate partition.
type Action string

// The actions Prune reports.
const (
	// ActionPrune: dropped (or, in a dry run, would be).
	ActionPrune Action = "prune"
	// ActionKeep: not due yet: a retention policy keeps it, it holds no entries, or it can only
	// go together with a partition that is not due.
	ActionKeep Action = "keep"
	// ActionRefuse: due, but it must not go: not archived, or the chain or the archive does not
	// check out.
	ActionRefuse Action = "refuse"
)

// PartitionStatus is one candidate partition and what Prune did with it.
type PartitionStatus struct {
	Name     string    `json:"name"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Rows     int64     `json:"rows"`
	FirstSeq int64     `json:"first_seq,omitempty"`
	LastSeq  int64     `json:"last_seq,omitempty"`
	Action   Action    `json:"action"`
	Reason   string    `json:"reason,omitempty"`
}

// PruneResult reports a prune.
type PruneResult struct {
	DryRun bool `json:"dry_run"`
	// Cutoff: partitions ending at or before it were candidates.
	Cutoff time.Time `json:"cutoff"`
	// ArchiveLastSeq is where the archive's complete batches end.
	ArchiveLastSeq int64 `json:"archive_last_seq"`
	// Partitions are the candidates, oldest first.
	Partitions []PartitionStatus `json:"partitions"`
	// Anchor is the anchor written (in a dry run: that would be written, unsigned); nil when
	// nothing goes.
	Anchor *Anchor `json:"anchor,omitempty"`
}

// Refused reports whether a due partition was refused.
func (r *PruneResult) Refused() bool {
	return slices.ContainsFunc(r.Partitions, func(p PartitionStatus) bool { return p.Action == ActionRefuse })
}

// Prune drops the monthly partitions of audit.events that ended at least cfg.OlderThan ago and
// are archived and verified, and leaves a signed anchor that the chain in the database continues
// from, all in one transaction on conn.
//
// A candidate goes when every retention policy covering its events allows it (Effective: its end
// plus keep has passed), when every entry in it is in a complete batch of the archive (the
// archive's last complete batch ends at or after its last seq), and when the partitions going
// hold exactly the chain's prefix: seq first..last with nothing missing and nothing of that
// range elsewhere, first being 1 or the previous anchor's seq + 1. (Partitions are by time and
// the chain is by transaction, so near a month boundary a long transaction can put entries of one
// month between the next month's; such a partition goes together with the next.) Then the
// segment is verified: every hash is recomputed, the first entry links to the previous anchor (or
// the genesis hash) and the entry after the last links to it; and the archive's copies of the
// first and last entry are the same entries. Candidates are taken oldest first: after one stays,
// every later one stays too.
//
// An error means nothing was changed; refusals are in the result (Refused), with what was
// pruned before the refused one.
func Prune(ctx context.Context, conn *pgx.Conn, cfg PruneConfig) (_ *PruneResult, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	res := &PruneResult{DryRun: cfg.DryRun, Cutoff: cfg.OlderThan.Before(now)}

	if !cfg.DryRun {
		if err := requireSuperuser(ctx, conn); err != nil {
			return nil, err
		}
	}
	st, err := (&archive.Writer{Sink: cfg.Sink}).Resume(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: read archive: %w", err)
	}
	res.ArchiveLastSeq = st.LastSeq

	tx, err := beginPrune(ctx, conn, cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	cands, err := candidates(ctx, tx, res.Cutoff, now, cfg.DryRun)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return res, nil
	}
	defer func() {
		if err == nil {
			for _, p := range cands {
				res.Partitions = append(res.Partitions, *p)
			}
		}
	}()
	start, prevHash, err := segmentStart(ctx, tx)
	if err != nil {
		return nil, err
	}
	due, err := duePartitions(ctx, tx, cands, st.LastSeq, now)
	if err != nil {
		return nil, err
	}
	set, cut, err := nextSegment(ctx, tx, cands, due, start)
	if err != nil {
		return nil, err
	}
	if set == nil {
		return res, nil
	}

	refuse := func(reason string) (*PruneResult, error) {
		for _, p := range set {
			p.Action, p.Reason = ActionRefuse, reason
		}
		holdLater(cands, set[len(set)-1])
		return res, nil
	}
	log.Info("verifying the chain segment to prune", "first_seq", start, "last_seq", cut)
	first, last, err := verifySegment(ctx, tx, start, cut, prevHash)
	var broken *segmentError
	if errors.As(err, &broken) {
		return refuse("not verified: " + broken.Error())
	}
	if err != nil {
		return nil, err
	}
	if reason, err := compareArchived(ctx, cfg.Sink, first, last); err != nil {
		return nil, err
	} else if reason != "" {
		return refuse(reason)
	}

	names := make([]string, len(set))
	for i, p := range set {
		names[i] = p.Name
	}
	slices.Sort(names)
	anchor := &Anchor{
		Version: AnchorVersion, Seq: cut, EntryHash: hex.EncodeToString(last.EntryHash), FirstSeq: start,
		Partitions: names, Rows: cut - start + 1, Archive: cfg.ArchiveURL,
		PrunedAt: now.Truncate(time.Microsecond).Format(anchorTime),
	}
	res.Anchor = anchor
	for _, p := range set {
		p.Action, p.Reason = ActionPrune, ""
	}
	if cfg.DryRun {
		return res, nil
	}
	details := map[string]any{"older_than": cfg.OlderThan.String(), "archive_last_seq": st.LastSeq,
		"cutoff": res.Cutoff.Format(time.RFC3339)}
	dropped, err := dropSegment(ctx, tx, anchor, last.EntryHash, cfg.Key, details)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("prune: commit: %w", err)
	}
	log.Info("pruned", "partitions", names, "first_seq", start, "last_seq", cut, "rows", dropped)
	return res, nil
}

// requireSuperuser refuses a session user that is not a superuser: only one may drop audit
// partitions (audit.prune_partitions checks it again).
func requireSuperuser(ctx context.Context, conn *pgx.Conn) error {
	var super bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = session_user`).Scan(&super); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if !super {
		return ErrNotSuperuser
	}
	return nil
}

// beginPrune starts the transaction that checks and drops, in UTC (partition bounds are UTC
// months), waiting at most lockTimeout (10 s when 0) for a lock.
func beginPrune(ctx context.Context, conn *pgx.Conn, lockTimeout time.Duration) (pgx.Tx, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if lockTimeout == 0 {
		lockTimeout = 10 * time.Second
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('TimeZone', 'UTC', true), set_config('lock_timeout', $1, true)`,
		fmt.Sprintf("%dms", lockTimeout.Milliseconds())); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("prune: %w", err)
	}
	return tx, nil
}

// candidates returns the partitions wholly before cutoff, oldest first, with their rows and seq
// range, each locked (unless dryRun) so that nobody changes its rows while they are checked and
// dropped. audit.create_partitions keeps last month's partition and later ones: never
// candidates.
func candidates(ctx context.Context, tx pgx.Tx, cutoff, now time.Time, dryRun bool) ([]*PartitionStatus, error) {
	managed := time.Date(now.Year(), now.Month()-1, 1, 0, 0, 0, 0, time.UTC)
	parts, err := listPartitions(ctx, tx)
	if err != nil {
		return nil, err
	}
	var cands []*PartitionStatus
	for i := range parts {
		p := &parts[i]
		if !p.To.After(cutoff) && !p.To.After(managed) {
			cands = append(cands, p)
		}
	}
	for _, p := range cands {
		if !dryRun {
			// SHARE: readers go on, nobody changes the rows while they are checked and dropped.
			if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{"audit", p.Name}.Sanitize()+" IN SHARE MODE"); err != nil {
				return nil, fmt.Errorf("prune: lock %s: %w", p.Name, err)
			}
		}
		err := tx.QueryRow(ctx, `SELECT count(*), COALESCE(min(seq), 0), COALESCE(max(seq), 0) FROM audit.events
		                           WHERE tableoid = ('audit.' || quote_ident($1))::regclass`, p.Name).
			Scan(&p.Rows, &p.FirstSeq, &p.LastSeq)
		if err != nil {
			return nil, fmt.Errorf("prune: read %s: %w", p.Name, err)
		}
	}
	return cands, nil
}

// segmentStart is where the chain in the database starts: after the newest anchor, or at seq 1.
func segmentStart(ctx context.Context, tx pgx.Tx) (start int64, prevHash []byte, err error) {
	anchors, err := LoadAnchors(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	if n := len(anchors); n > 0 {
		prevHash, err = anchors[n-1].EntryHashBytes()
		return anchors[n-1].Seq + 1, prevHash, err
	}
	return 1, pgtrail.GenesisHash, nil
}

// duePartitions returns the oldest candidates that are due (no policy holds them) and archived
// (through archivedSeq), up to the first that is not, which holds every later one.
func duePartitions(ctx context.Context, tx pgx.Tx, cands []*PartitionStatus, archivedSeq int64, now time.Time) ([]*PartitionStatus, error) {
	policies, err := LoadPolicies(ctx, tx)
	if err != nil {
		return nil, err
	}
	var due []*PartitionStatus
	for _, p := range cands {
		if p.Action != "" {
			continue
		}
		reason, err := policyHold(ctx, tx, p, policies, now)
		if err != nil {
			return nil, err
		}
		switch {
		case reason != "":
			p.Action, p.Reason = ActionKeep, reason
		case p.Rows > 0 && p.LastSeq > archivedSeq:
			p.Action, p.Reason = ActionRefuse, fmt.Sprintf("not archived: the archive's complete batches end at seq %d, the partition at seq %d", archivedSeq, p.LastSeq)
		default:
			due = append(due, p)
			continue
		}
		holdLater(cands, p)
		break
	}
	return due, nil
}

// nextSegment returns the longest run of due partitions that holds exactly the chain's next
// segment, from start to cut, nil when none does (each partition left out says why).
func nextSegment(ctx context.Context, tx pgx.Tx, cands, due []*PartitionStatus, start int64) (set []*PartitionStatus, cut int64, err error) {
	for k := len(due); k > 0 && set == nil; k-- {
		s := due[:k]
		var rows, lo, hi int64
		var oids []string
		for _, p := range s {
			rows += p.Rows
			if p.Rows > 0 {
				if lo == 0 || p.FirstSeq < lo {
					lo = p.FirstSeq
				}
				hi = max(hi, p.LastSeq)
			}
			oids = append(oids, p.Name)
		}
		last := s[k-1]
		if rows == 0 {
			last.Action, last.Reason = ActionKeep, "holds no entries: goes with the next partition that does"
			holdLater(due, last)
			continue
		}
		var strayName string
		var straySeq int64
		err := tx.QueryRow(ctx, `SELECT e.seq, c.relname FROM audit.events e JOIN pg_class c ON c.oid = e.tableoid
		                          WHERE e.seq <= $1 AND c.relname::text <> ALL ($2::text[]) ORDER BY e.seq LIMIT 1`, hi, oids).Scan(&straySeq, &strayName)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, 0, fmt.Errorf("prune: %w", err)
		default:
			last.Action, last.Reason = ActionKeep, fmt.Sprintf(
				"its entries interleave with %s (seq %d there is below its last, %d): the two can only go together", strayName, straySeq, hi)
			holdLater(due, last)
			continue
		}
		if lo != start || rows != hi-start+1 {
			for _, p := range s {
				p.Action, p.Reason = ActionRefuse, fmt.Sprintf(
					"the chain in the database starts at seq %d, but these partitions hold %d entries from seq %d to %d: entries are missing or duplicated (run pgtrail verify db)",
					start, rows, lo, hi)
			}
			holdLater(cands, s[k-1])
			break
		}
		set, cut = s, hi
	}
	return set, cut, nil
}

// dropSegment signs the anchor and drops its partitions with audit.prune_partitions, which
// records the anchor and the PRUNE event; it returns the rows dropped.
func dropSegment(ctx context.Context, tx pgx.Tx, anchor *Anchor, lastHash []byte, key ed25519.PrivateKey, details map[string]any) (int64, error) {
	anchor.sign(key)
	sig, err := base64.StdEncoding.DecodeString(anchor.Signature)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	prunedAt, _ := time.Parse(anchorTime, anchor.PrunedAt)
	regs := make([]string, len(anchor.Partitions))
	for i, n := range anchor.Partitions {
		regs[i] = pgx.Identifier{"audit", n}.Sanitize()
	}
	var dropped int64
	err = tx.QueryRow(ctx, `SELECT audit.prune_partitions($1::text[]::regclass[], $2, $3, $4, $5, $6, $7, $8, $9)`,
		regs, anchor.FirstSeq, anchor.Seq, lastHash, anchor.Archive, prunedAt, []byte(key.Public().(ed25519.PublicKey)),
		sig, details).Scan(&dropped)
	if err != nil {
		return 0, fmt.Errorf("prune: drop %s: %w", strings.Join(anchor.Partitions, ", "), err)
	}
	return dropped, nil
}

// holdLater marks every candidate after p that has no action yet as kept because of p.
func holdLater(cands []*PartitionStatus, p *PartitionStatus) {
	after := false
	for _, c := range cands {
		if c == p {
			after = true
			continue
		}
		if after && (c.Action == "" || c.Action == ActionPrune) {
			c.Action, c.Reason = ActionKeep, "an older partition ("+p.Name+") stays: the chain can only be cut from its start"
		}
	}
}

// listPartitions returns the range partitions of audit.events, oldest first.
func listPartitions(ctx context.Context, q Querier) ([]PartitionStatus, error) {
	rows, err := q.Query(ctx, `
SELECT c.relname, (b[1])::timestamptz, (b[2])::timestamptz
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b
 WHERE i.inhparent = 'audit.events'::regclass AND b IS NOT NULL
 ORDER BY 2`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PartitionStatus, error) {
		var p PartitionStatus
		err := r.Scan(&p.Name, &p.From, &p.To)
		p.From, p.To = p.From.UTC(), p.To.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	return parts, nil
}

// policyHold returns why a retention policy keeps partition p at now, or "".
func policyHold(ctx context.Context, q Querier, p *PartitionStatus, policies []Policy, now time.Time) (string, error) {
	if len(policies) == 0 || p.Rows == 0 {
		return "", nil
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT tenant_id, action_type FROM audit.events
	                            WHERE tableoid = ('audit.' || quote_ident($1))::regclass ORDER BY 1, 2`, p.Name)
	if err != nil {
		return "", fmt.Errorf("prune: read %s: %w", p.Name, err)
	}
	type group struct {
		tenant *string
		action string
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
		var g group
		err := r.Scan(&g.tenant, &g.action)
		return g, err
	})
	if err != nil {
		return "", fmt.Errorf("prune: read %s: %w", p.Name, err)
	}
	var latest time.Time
	var why string
	for _, g := range groups {
		pol := Effective(policies, g.tenant, g.action)
		if pol == nil {
			continue
		}
		if until := pol.Keep.AddTo(p.To); until.After(now) && until.After(latest) {
			tenant := "events without a tenant"
			if g.tenant != nil {
				tenant = "tenant " + *g.tenant
			}
			latest, why = until, fmt.Sprintf("retention policy: %s keeps %s events for %s, until %s",
				tenant, g.action, pol.Keep, until.Format(time.DateOnly))
		}
	}
	return why, nil
}

// segmentError is a break found in the chain segment to prune.
type segmentError struct{ msg string }

func (e *segmentError) Error() string { return e.msg }

// verifySegment recomputes entries from..to and the link of entry to+1 (or the chain head) to
// them, and returns copies of the first and last entry.
func verifySegment(ctx context.Context, q Querier, from, to int64, prevHash []byte) (first, last *pgtrail.Event, err error) {
	expect := from
	var buf []byte
	var next *pgtrail.Event
	err = chain.Read(ctx, q, from, to+1, func(e *pgtrail.Event) error {
		if e.Seq != expect {
			if e.Seq == expect-1 {
				return &segmentError{fmt.Sprintf("seq %d appears twice", e.Seq)}
			}
			return &segmentError{fmt.Sprintf("seq %d is missing", expect)}
		}
		expect++
		var sum [32]byte
		sum, buf = e.Hash(buf)
		if !bytes.Equal(sum[:], e.EntryHash) {
			return &segmentError{fmt.Sprintf("seq %d: its content does not match its entry_hash", e.Seq)}
		}
		if !bytes.Equal(e.PrevHash, prevHash) {
			if e.Seq == from && from > 1 {
				return &segmentError{fmt.Sprintf("seq %d: prev_hash is not the entry_hash of the previous anchor", e.Seq)}
			}
			return &segmentError{fmt.Sprintf("seq %d: prev_hash is not the entry_hash of seq %d", e.Seq, e.Seq-1)}
		}
		prevHash = slices.Clone(e.EntryHash)
		c := *e
		switch e.Seq {
		case from:
			first = &c
		case to:
			last = &c
		case to + 1:
			next = &c
		}
		if from == to && e.Seq == from {
			last = &c
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if last == nil {
		return nil, nil, &segmentError{fmt.Sprintf("seq %d is missing", expect)}
	}
	if next == nil {
		// The segment ends the chain: its last entry must be the head.
		var headSeq int64
		var headHash []byte
		if err := q.QueryRow(ctx, `SELECT seq, entry_hash FROM audit.chain_head`).Scan(&headSeq, &headHash); err != nil {
			return nil, nil, fmt.Errorf("prune: read chain head: %w", err)
		}
		if headSeq != to || !bytes.Equal(headHash, last.EntryHash) {
			return nil, nil, &segmentError{fmt.Sprintf("seq %d is missing after the segment, or the chain head (seq %d) does not match it", to+1, headSeq)}
		}
	}
	return first, last, nil
}

// compareArchived checks that the archive holds the same first and last entries as the database;
// it returns why not, or "".
func compareArchived(ctx context.Context, sink archive.Sink, entries ...*pgtrail.Event) (string, error) {
	keys, err := sink.List(ctx, archive.EventsPrefix)
	if err != nil {
		return "", fmt.Errorf("prune: list archive: %w", err)
	}
	decoded := map[string][]pgtrail.Event{}
	var bufA, bufB []byte
	for _, e := range entries {
		var found *pgtrail.Event
		for _, k := range keys {
			first, last, ok := archive.ParseDataKey(k)
			if !ok || e.Seq < first || e.Seq > last {
				continue
			}
			evs, ok := decoded[k]
			if !ok {
				data, err := sink.Get(ctx, k)
				if err != nil {
					return "", fmt.Errorf("prune: read archive: %w", err)
				}
				if evs, err = archive.DecodeParquet(data); err != nil {
					return fmt.Sprintf("not verified: archived %s is unreadable: %v", k, err), nil
				}
				decoded[k] = evs
			}
			for i := range evs {
				if evs[i].Seq == e.Seq {
					found = &evs[i]
				}
			}
			if found != nil {
				break
			}
		}
		if found == nil {
			return fmt.Sprintf("not archived: no archived file holds seq %d", e.Seq), nil
		}
		bufA = pgtrail.AppendCanonical(bufA[:0], e)
		bufB = pgtrail.AppendCanonical(bufB[:0], found)
		if !bytes.Equal(bufA, bufB) || !bytes.Equal(e.EntryHash, found.EntryHash) || !bytes.Equal(e.PrevHash, found.PrevHash) {
			return fmt.Sprintf("not verified: the archive's seq %d differs from the database's", e.Seq), nil
		}
	}
	return "", nil
}
