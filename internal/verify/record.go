package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// ActionVerify is the action_type of the audit events that record verification runs.
const ActionVerify = "VERIFY"

// Run is what Record writes about a verification run.
type Run struct {
	// Scope is "db", "archive" or "all"; Archive the archive URL, if any.
	Scope   string
	Archive string
	// Report is the run's report; nil when it could not verify (then Err says why).
	Report *Report
	Err    error
	// Checkpoint is the signed checkpoint the run leaves for the next one, if any.
	Checkpoint *Checkpoint
	// Host and OSUser say where and by whom the run was made (the database user is recorded
	// by audit.log_event itself).
	Host, OSUser string
}

// recordDetails is the details of a VERIFY event.
type recordDetails struct {
	Scope             string       `json:"scope"`
	Archive           string       `json:"archive,omitempty"`
	Result            string       `json:"result"` // intact, tampered or could_not_verify
	Entries           int64        `json:"entries"`
	FirstSeq          int64        `json:"first_seq,omitempty"`
	LastSeq           int64        `json:"last_seq,omitempty"`
	SinceSeq          int64        `json:"since_seq,omitempty"`
	Problems          int          `json:"problems"`
	ProblemsTruncated bool         `json:"problems_truncated,omitempty"`
	Kinds             map[Kind]int `json:"kinds,omitempty"`
	FirstProblems     []Problem    `json:"first_problems,omitempty"`
	Error             string       `json:"error,omitempty"`
	Host              string       `json:"host,omitempty"`
	OSUser            string       `json:"os_user,omitempty"`
	StartedAt         *time.Time   `json:"started_at,omitempty"`
	DurationMS        int64        `json:"duration_ms,omitempty"`
	Checkpoint        *Checkpoint  `json:"checkpoint,omitempty"`
}

// recordedProblems is how many problems a VERIFY event lists; the report has them all.
const recordedProblems = 10

// Record writes the outcome of a run into the trail, as
// audit.log_event('VERIFY', 'audit.events', '<first seq>-<last seq>', SUCCESS|FAILURE, details),
// in its own transaction: the run's range, result, problems (the first few, and a count per
// kind), who ran it, and the checkpoint for the next run. It returns the event_id.
func Record(ctx context.Context, db Querier, run Run) (string, error) {
	d := recordDetails{Scope: run.Scope, Archive: run.Archive, Result: "could_not_verify", Host: run.Host,
		OSUser: run.OSUser, Checkpoint: run.Checkpoint}
	outcome, rangeID := "FAILURE", ""
	if run.Err != nil {
		d.Error = run.Err.Error()
	}
	if rep := run.Report; rep != nil {
		d.Result = "tampered"
		if rep.Intact() && run.Err == nil {
			d.Result, outcome = "intact", "SUCCESS"
		}
		d.Entries, d.FirstSeq, d.LastSeq = rep.Entries, rep.FirstSeq, rep.LastSeq
		if rep.Since != nil {
			d.SinceSeq = rep.Since.Seq
		}
		d.Problems, d.ProblemsTruncated = len(rep.Problems), rep.Truncated
		for i, p := range rep.Problems {
			if d.Kinds == nil {
				d.Kinds = map[Kind]int{}
			}
			d.Kinds[p.Kind]++
			if i < recordedProblems {
				d.FirstProblems = append(d.FirstProblems, p)
			}
		}
		started := rep.StartedAt.UTC()
		d.StartedAt = &started
		d.DurationMS = rep.FinishedAt.Sub(rep.StartedAt).Milliseconds()
		if rep.Entries > 0 {
			rangeID = fmt.Sprintf("%d-%d", rep.FirstSeq, rep.LastSeq)
		}
	}
	if outcome != "SUCCESS" {
		d.Checkpoint = nil // only an intact run may move the starting point of the next one
	}
	details, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("record verification: %w", err)
	}
	var resourceID *string
	if rangeID != "" {
		resourceID = &rangeID
	}
	var id string
	err = db.QueryRow(ctx, `SELECT audit.log_event($1, 'audit.events', $2, $3, $4::jsonb)::text`,
		ActionVerify, resourceID, outcome, string(details)).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("record verification: %w", err)
	}
	return id, nil
}
