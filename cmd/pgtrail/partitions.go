package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/retention"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// partitionsSubcommands are partitions' subcommands.
var partitionsSubcommands = []subcommand{
	{"list", "monthly partitions of audit.events with their seq ranges, and where the chain starts", runPartitionsList},
	{"prune", "drop partitions older than --older-than once archived and verified, leaving a signed anchor", runPartitionsPrune},
}

func runPartitions(ctx context.Context, e *env, args []string) error {
	const usage = "partitions list|prune [flags]"
	if len(args) == 0 {
		return usageError("pgtrail partitions --help", errors.New("expected: partitions list or partitions prune"))
	}
	if isHelp(args[0]) {
		printGroupHelp(ctx, e, usage, partitionsSubcommands, true)
		return nil
	}
	if sub := findSubcommand(partitionsSubcommands, args[0]); sub != nil {
		return sub.run(ctx, e, args[1:])
	}
	return usageError("pgtrail partitions --help", fmt.Errorf("unknown partitions command %q (want: list, prune)", args[0]))
}

// partitionRow is one line of "partitions list".
type partitionRow struct {
	Name     string    `json:"name"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	FirstSeq *int64    `json:"first_seq"`
	LastSeq  *int64    `json:"last_seq"`
}

func runPartitionsList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "partitions list", "partitions list [--json]")
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// Seq ranges through the parent, one partition at a time by its bounds: the primary key
	// index answers min and max, and auditors may read the parent but not the partitions.
	rows, err := conn.Query(ctx, `
SELECT c.relname, (b[1])::timestamptz, (b[2])::timestamptz,
       (SELECT min(e.seq) FROM audit.events e WHERE e.occurred_at >= (b[1])::timestamptz AND e.occurred_at < (b[2])::timestamptz),
       (SELECT max(e.seq) FROM audit.events e WHERE e.occurred_at >= (b[1])::timestamptz AND e.occurred_at < (b[2])::timestamptz)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b
 WHERE i.inhparent = 'audit.events'::regclass AND b IS NOT NULL
 ORDER BY 2`)
	if err != nil {
		return permissionOrFail("list partitions", err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (partitionRow, error) {
		var p partitionRow
		err := r.Scan(&p.Name, &p.From, &p.To, &p.FirstSeq, &p.LastSeq)
		p.From, p.To = p.From.UTC(), p.To.UTC()
		return p, err
	})
	if err != nil {
		return permissionOrFail("list partitions", err)
	}
	anchors, err := retention.LoadAnchors(ctx, conn)
	if err != nil {
		return permissionOrFail("list partitions", err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"partitions": parts, "anchors": anchors})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tFROM (UTC)\tTO\tSEQ")
	for _, p := range parts {
		seq := "-"
		if p.FirstSeq != nil {
			seq = fmt.Sprintf("%d..%d", *p.FirstSeq, *p.LastSeq)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.From.Format(time.DateOnly), p.To.Format(time.DateOnly), seq)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := len(anchors); n > 0 {
		a := anchors[n-1]
		fmt.Fprintf(e.stdout, "chain starts after seq %d (anchor %s, pruned %s; entries %d..%d are in %s)\n",
			a.Seq, shortHash(a.EntryHash), a.PrunedAt, a.FirstSeq, a.Seq, a.Archive)
	} else {
		fmt.Fprintln(e.stdout, "chain starts at seq 1 (nothing pruned)")
	}
	return nil
}

func runPartitionsPrune(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "partitions prune", "partitions prune --older-than 13mo --archive URL [--signing-key PATH] [--dry-run] [--json]")
	var db dbFlags
	db.register(fs)
	var af readArchiveFlags
	af.register(fs, "the archive that must hold every pruned entry (file:///dir or s3://bucket/prefix)")
	olderThan := fs.String("older-than", "", "prune partitions whose month ended at least this long ago (e.g. 13mo, 2y)")
	signingKey := fs.String("signing-key", "", "the archive's ed25519 private key (pgtrail keygen): signs the anchor the chain continues from")
	dryRun := fs.Bool("dry-run", false, "check everything and show what would go; change nothing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Errorf("unexpected argument %q", pos[0]))
	}
	if *olderThan == "" || af.url == "" {
		return fs.usageError(errors.New("--older-than and --archive are required"))
	}
	age, err := timeexpr.ParseAge(*olderThan)
	if err != nil {
		return notRun(fmt.Errorf("--older-than: %w", err))
	}
	cfg := retention.PruneConfig{OlderThan: age, DryRun: *dryRun,
		Log: slog.New(slog.NewTextHandler(e.stderr, nil)).With("command", "partitions prune")}
	if !*dryRun {
		if *signingKey == "" {
			return notRun(fmt.Errorf("--signing-key is required: %w", retention.ErrNoSigningKey))
		}
		if cfg.Key, err = archive.LoadPrivateKey(ctx, *signingKey); err != nil {
			return notRun(fmt.Errorf("--signing-key: %w", err))
		}
	}
	if cfg.Sink, cfg.ArchiveURL, err = af.open(ctx); err != nil {
		return err
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := retention.Prune(ctx, conn, cfg)
	switch {
	case errors.Is(err, retention.ErrNotSuperuser), errors.Is(err, retention.ErrNoSigningKey):
		return notRun(err)
	case err != nil:
		return permissionOrFail("prune", err)
	}
	if *asJSON {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		printPrune(e, res)
	}
	if res.Refused() {
		return &exitError{code: exitFailed, err: errors.New("refused: a due partition is not archived or not verified (see above)")}
	}
	return nil
}

func printPrune(e *env, res *retention.PruneResult) {
	verb := map[retention.Action]string{retention.ActionPrune: "pruned", retention.ActionKeep: "kept", retention.ActionRefuse: "REFUSED"}
	if res.DryRun {
		verb[retention.ActionPrune] = "would prune"
	}
	fmt.Fprintf(e.stdout, "partitions ending by %s (archive complete to seq %d):\n", res.Cutoff.Format(time.RFC3339), res.ArchiveLastSeq)
	if len(res.Partitions) == 0 {
		fmt.Fprintln(e.stdout, "  none")
	}
	for _, p := range res.Partitions {
		seq := "no entries"
		if p.Rows > 0 {
			seq = fmt.Sprintf("seq %d..%d, %d entries", p.FirstSeq, p.LastSeq, p.Rows)
		}
		line := fmt.Sprintf("  %s %s (%s)", verb[p.Action], p.Name, seq)
		if p.Reason != "" {
			line += ": " + p.Reason
		}
		fmt.Fprintln(e.stdout, line)
	}
	if a := res.Anchor; a != nil {
		state := "written"
		if res.DryRun {
			state = "would be written"
		}
		fmt.Fprintf(e.stdout, "anchor %s: the chain continues at seq %d from entry_hash %s\n", state, a.Seq+1, shortHash(a.EntryHash))
	}
}
