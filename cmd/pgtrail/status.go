package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgtrail/pgtrail/internal/status"
)

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", `status [--json] [--max-pending-age 1m]

Shows what keeps the trail from being whole or current first, each with the command that fixes
it, then capture per table, the chain head, the last verification, the replication slots and
the partitions. Exits 1 when there is a problem, 0 when there is none.

Examples:
  pgtrail status
  pgtrail status --json | jq .problems`)
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	maxPending := fs.Duration("max-pending-age", time.Minute, "entries waiting longer than this to be sealed are a problem (no sealer runs)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	st, err := status.Read(ctx, conn)
	if errors.Is(err, status.ErrUnreachable) || isPermission(err) {
		return notRun(err)
	} else if err != nil {
		return err
	}
	st.Diagnose(*maxPending)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		printStatus(e, st)
	}
	if len(st.Problems) > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("%d problem(s) found", len(st.Problems))}
	}
	return nil
}

func permissionOrFail(what string, err error) error {
	if isPermission(err) {
		return notRun(fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func printStatus(e *env, st *status.Report) {
	if len(st.Problems) == 0 {
		fmt.Fprintln(e.stdout, "no problems found")
	} else {
		fmt.Fprintf(e.stdout, "PROBLEMS (%d):\n", len(st.Problems))
		for _, p := range st.Problems {
			fmt.Fprintf(e.stdout, "  - %s\n      fix: %s\n", p.Problem, p.Fix)
		}
	}
	fmt.Fprintln(e.stdout)
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "schema version\t%d\n", st.SchemaVersion)
	fmt.Fprintf(w, "chain head\tseq %d, %s\n", st.HeadSeq, st.HeadHash)
	if st.LastSealedAt == nil {
		fmt.Fprintf(w, "last sealed\tnever\n")
	} else {
		fmt.Fprintf(w, "last sealed\t%s\n", st.LastSealedAt.Format(time.RFC3339))
	}
	if v := st.LastVerification; v == nil {
		fmt.Fprintf(w, "last verified\tnever (run pgtrail verify; nightly: deploy/)\n")
	} else {
		fmt.Fprintf(w, "last verified\t%s, %s of %s: %s\n", v.At.UTC().Format(time.RFC3339), v.Scope, v.Range, v.Outcome)
	}
	pending := fmt.Sprintf("%d", st.Pending)
	if st.OldestPendingAge != nil {
		pending += fmt.Sprintf(" (oldest %.1fs ago)", *st.OldestPendingAge)
	}
	fmt.Fprintf(w, "pending (unsealed)\t%s\n", pending)
	w.Flush()
	fmt.Fprintf(e.stdout, "\naudited tables (%d):\n", len(st.Tables))
	for _, t := range st.Tables {
		state := "capturing (mode " + t.Mode + ")"
		if t.Problem != "" {
			state = t.Problem + " (mode " + t.Mode + ")"
		}
		excl := ""
		if len(t.ExcludeColumns) > 0 {
			excl = " excluding " + strings.Join(t.ExcludeColumns, ", ")
		}
		fmt.Fprintf(e.stdout, "  %s: %s%s (since %s by %s)\n", t.Name, state, excl, t.EnabledAt.Format(time.RFC3339), t.EnabledBy)
	}
	fmt.Fprintf(e.stdout, "\nreplication slots (%d):\n", len(st.Slots))
	for _, s := range st.Slots {
		state := "inactive (no pgtrail stream reading it)"
		if s.Active {
			state = "active"
		}
		failover := "not failover-safe"
		if s.FailoverSafe {
			failover = "failover-safe"
		}
		confirmed := "none"
		if s.ConfirmedLSN != nil {
			confirmed = *s.ConfirmedLSN
		}
		fmt.Fprintf(e.stdout, "  %s: %s, confirmed %s, capture lag %d bytes, retains %d bytes of WAL, %s\n",
			s.Name, state, confirmed, s.CaptureLag, s.RetainedWAL, failover)
	}
	fmt.Fprintf(e.stdout, "\npartitions (%d):\n", len(st.Partitions))
	for _, p := range st.Partitions {
		approx := ""
		if p.Estimated {
			approx = "~"
		}
		fmt.Fprintf(e.stdout, "  %s  %s  %s%s\n", p.Name, p.Bounds, approx, plural(p.Rows, "row", "rows"))
	}
}
