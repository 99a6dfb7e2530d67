package hostile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/verify"
)

// result is what an attack saw: PostgreSQL's answer, the CLI run it made, or what it read back.
type result struct {
	err  error
	run  *cliRun
	read string
	// control is what the role read for a value nobody has, to compare read with (the answer
	// for another tenant's value).
	control string
}

// outcome is what a user relies on after an attack; check says how it did not hold, nil when
// it held. (It fails the test itself only when the world cannot be examined.)
type outcome interface {
	check(w *world, r result) error
	String() string
}

// refused: PostgreSQL refuses the statement (code, when set, is its SQLSTATE), or the CLI exits
// with exit and says why on one line of stderr; msg is in the message either way.
type refused struct {
	code string
	exit int
	msg  string
}

func (o refused) String() string {
	if o.exit != 0 {
		return fmt.Sprintf("refused (exit %d, %q)", o.exit, o.msg)
	}
	return fmt.Sprintf("refused (%q)", o.msg)
}

func (o refused) check(w *world, r result) error {
	if o.exit != 0 {
		if r.run == nil || r.run.code != o.exit || !oneLine(r.run.stderr) || !strings.Contains(r.run.stderr, o.msg) {
			return fmt.Errorf("%v; want exit %d and one line saying %q", r.run, o.exit, o.msg)
		}
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(r.err, &pgErr) || o.code != "" && pgErr.Code != o.code || !strings.Contains(pgErr.Message, o.msg) {
		return fmt.Errorf("PostgreSQL answered %v; want a refusal (SQLSTATE %q) saying %q", r.err, o.code, o.msg)
	}
	return nil
}

// caught: `pgtrail verify scope --json` (with args), run afterwards, exits 1 and reports a
// problem of kind whose detail holds detail. Scope db chains what is pending first (seal
// --once), as the stream would have. since: the run is the nightly incremental one
// (--since-checkpoint, the verifier's own key), which must also report the checkpoints it
// skipped.
type caught struct {
	scope  string
	kind   verify.Kind
	detail string
	since  bool
	args   []string
}

func (o caught) String() string {
	return fmt.Sprintf("caught (verify %s%s: exit 1, %s)", o.scope, strings.Join(append([]string{""}, o.args...), " "), o.kind)
}

func (o caught) check(w *world, r result) error {
	w.t.Helper()
	if r.err != nil {
		return fmt.Errorf("the attack itself failed: %w", r.err)
	}
	if o.scope == "db" {
		w.chain()
	}
	args := o.args
	if o.since {
		args = append(args, "--since-checkpoint", "--signing-key", w.verifierKey())
	}
	run, rep := w.verify(o.scope, args...)
	found := false
	for _, p := range rep.Problems {
		found = found || p.Kind == o.kind && strings.Contains(p.Detail, o.detail)
	}
	if run.code != 1 || rep.Intact || !found {
		return fmt.Errorf("%s\nwant exit 1 and a %s problem saying %q", run, o.kind, o.detail)
	}
	if o.since && len(rep.Skipped) == 0 {
		return fmt.Errorf("%s\nwant the checkpoint that does not verify reported as skipped", run)
	}
	return nil
}

// recorded: an entry of the chain has action_type action and resource_type or resource_id
// resource (and meets where, a condition on audit.events, if set), and the trail verifies
// intact. archived: the entry must reach the archive too (pgtrail stream runs), and verify all
// find the database and the archive intact.
type recorded struct {
	action, resource, where string
	archived                bool
}

func (o recorded) String() string {
	if o.archived {
		return fmt.Sprintf("recorded (%s %s chained and archived; verify all intact)", o.action, o.resource)
	}
	return fmt.Sprintf("recorded (%s %s chained; verify db intact)", o.action, o.resource)
}

func (o recorded) check(w *world, r result) error {
	w.t.Helper()
	if r.err != nil {
		return fmt.Errorf("the attack itself failed: %w", r.err)
	}
	w.chain()
	scope := "db"
	if o.archived {
		w.stream()
		scope = "all"
	}
	where := "true"
	if o.where != "" {
		where = o.where
	}
	var seq int64
	err := w.db().QueryRow(context.Background(), `SELECT COALESCE(max(seq), 0) FROM audit.events
		WHERE action_type = $1 AND (resource_type = $2 OR resource_id = $2) AND (`+where+`)`, o.action, o.resource).Scan(&seq)
	if err != nil || seq == 0 {
		return fmt.Errorf("no %s entry for %s where %s in the chain (%v)", o.action, o.resource, where, err)
	}
	if o.archived {
		entries, archived := w.events(), w.archived()
		if int64(len(archived)) < seq || !bytes.Equal(archived[seq-1].EntryHash, entries[seq-1].EntryHash) {
			return fmt.Errorf("entry %d is not in the archive as in the chain (%d archived)", seq, len(archived))
		}
	}
	if run, rep := w.verify(scope); run.code != 0 || !rep.Intact {
		return fmt.Errorf("%s\nwant the trail intact", run)
	}
	return nil
}

// contained: the CLI, run under the data limit, exits with exit and one line of stderr holding
// each of msg: it read what it was given within bounds, or refused it.
type contained struct {
	exit int
	msg  []string
}

func (o contained) String() string {
	return fmt.Sprintf("contained (exit %d within %d MiB of data, %q)", o.exit, dataLimit>>10, strings.Join(o.msg, " … "))
}

func (o contained) check(w *world, r result) error {
	if r.run == nil || !r.run.limited {
		return errors.New("the attack made no run under the data limit")
	}
	ok := r.run.code == o.exit && oneLine(r.run.stderr)
	for _, m := range o.msg {
		ok = ok && strings.Contains(r.run.stderr, m)
	}
	if !ok {
		return fmt.Errorf("%v; want exit %d and one line with %q", r.run, o.exit, o.msg)
	}
	return nil
}

// withheld: what the role read back holds each of present (it read the trail) but not secret;
// or, with asControl, is what it read for a value nobody has.
type withheld struct {
	secret    string
	present   []string
	asControl bool
}

func (o withheld) String() string {
	if o.asControl {
		return "withheld (another tenant's value reads as no value)"
	}
	return fmt.Sprintf("withheld (%q)", o.secret)
}

func (o withheld) check(w *world, r result) error {
	if r.err != nil {
		return fmt.Errorf("the read failed: %w", r.err)
	}
	if o.asControl {
		if r.read == "" || r.read != r.control {
			return fmt.Errorf("read for another tenant's value %q, for a value nobody has %q: want them alike", r.read, r.control)
		}
		return nil
	}
	var errs []error
	for _, p := range o.present {
		if !strings.Contains(r.read, p) {
			errs = append(errs, fmt.Errorf("read %.2000q: want %q in it", r.read, p))
		}
	}
	if strings.Contains(r.read, o.secret) {
		errs = append(errs, fmt.Errorf("read %.2000q: %q is in it", r.read, o.secret))
	}
	return errors.Join(errs...)
}
