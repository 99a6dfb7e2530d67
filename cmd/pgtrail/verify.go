package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pgtrail/pgtrail/verify"
)

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify", "verify db [--json]")
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "db" {
		fs.Usage()
		return notRun(fmt.Errorf("expected: verify db"))
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rep, err := verify.DB(ctx, conn)
	if err != nil {
		// Whatever stopped the check, the chain's state is unknown: "could not verify".
		return notRun(err)
	}
	if *asJSON {
		out := struct {
			*verify.Report
			Intact bool `json:"intact"`
		}{rep, rep.Intact()}
		if err := json.NewEncoder(e.stdout).Encode(out); err != nil {
			return notRun(err)
		}
	} else {
		printReport(e, rep)
	}
	if !rep.Intact() {
		return &exitError{code: exitFailed}
	}
	return nil
}

func printReport(e *env, rep *verify.Report) {
	if rep.Intact() {
		fmt.Fprintf(e.stdout, "intact: %d entries (seq %d..%d), head %s, %.0f entries/s",
			rep.Entries, rep.FirstSeq, rep.LastSeq, shortHash(rep.HeadHash), rep.EntriesPerS)
		if rep.Unsealed > 0 {
			fmt.Fprintf(e.stdout, "; %d entries not sealed yet", rep.Unsealed)
		}
		fmt.Fprintln(e.stdout)
		return
	}
	fmt.Fprintf(e.stdout, "TAMPERING DETECTED: %d problem(s) in %d entries\n", len(rep.Problems), rep.Entries)
	for _, p := range rep.Problems {
		fmt.Fprintf(e.stdout, "  seq %d: %s: %s\n", p.Seq, p.Kind, p.Detail)
	}
	if rep.Truncated {
		fmt.Fprintln(e.stdout, "  (more problems not shown)")
	}
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
