package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/pace"
	"github.com/pgtrail/pgtrail/internal/retention"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// verifySubcommands are verify's scopes.
var verifySubcommands = []subcommand{
	{"db", "the chain in the database: every hash recomputed, links, seq gaps, the head, capture lag", verifyIn("db")},
	{"archive", "the archive (file:// or s3://): every file's hash, every digest's signature and chain", verifyIn("archive")},
	{"all", "both, at once, and the database against the archive, entry by entry", verifyIn("all")},
}

// verifyIn returns the run function of verify's scope.
func verifyIn(scope string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error { return runVerifyScope(ctx, e, scope, args) }
}

// verifySynopses are the usage lines of verify's scopes.
var verifySynopses = map[string]string{
	"db":      "verify db [flags]",
	"archive": "verify archive ARCHIVE_URL --public-key KEY [flags]",
	"all":     "verify all ARCHIVE_URL --public-key KEY [flags]",
}

const verifyExpected = "expected: verify db | verify archive ARCHIVE_URL --public-key KEY | verify all ARCHIVE_URL --public-key KEY"

// verifyFlags are verify's flags.
type verifyFlags struct {
	db                   dbFlags
	archive              string
	endpoint, region     string
	publicKey            string
	json                 bool
	since                bool
	checkpointFile       string
	signingKey           string
	archiveLag           time.Duration
	webhook              string
	alertTimeout         time.Duration
	alertRetries         int
	noRecord             bool
	workers, dbStreams   int
	scope, archiveURL    string
	pub                  ed25519.PublicKey
	key                  ed25519.PrivateKey
	useDB, checkpointsDB bool
	maxCaptureLag        time.Duration
	slot                 string
	skipped              []string // checkpoints that did not verify
}

func runVerify(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && isHelp(args[0]) {
		printGroupHelp(ctx, e, "verify db|archive|all [flags]", verifySubcommands, false)
		return nil
	}
	scope, rest := verifyScope(e, args)
	if scope == "" {
		return usageError("pgtrail verify --help", errors.New(verifyExpected))
	}
	return runVerifyScope(ctx, e, scope, rest)
}

// verifyScope finds the scope (db, archive, all) in args, first or after flags ("verify --json
// db"), and returns it and the other arguments; "" when there is none.
func verifyScope(e *env, args []string) (string, []string) {
	if len(args) > 0 && verifySynopses[args[0]] != "" {
		return args[0], args[1:]
	}
	// Flags first: the first positional argument is the scope, found with every scope's flags.
	probe := newFlagSet(&env{stdout: io.Discard, stderr: io.Discard, getenv: e.getenv}, "verify", "")
	new(verifyFlags).register(probe, "")
	if err := probe.Parse(args); err != nil || probe.NArg() == 0 {
		return "", nil
	}
	i := len(args) - probe.NArg()
	if verifySynopses[args[i]] == "" {
		return "", nil
	}
	return args[i], append(args[:i:i], args[i+1:]...)
}

func runVerifyScope(ctx context.Context, e *env, scope string, args []string) error {
	fs := newFlagSet(e, "verify "+scope, verifySynopses[scope])
	f := verifyFlags{scope: scope}
	f.register(fs, scope)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if f.webhook == "" {
		f.webhook = e.getenv("PGTRAIL_ALERT_WEBHOOK")
	}
	if err := f.resolve(e, pos); err != nil {
		return fs.usageError(err)
	}
	if err := f.load(ctx); err != nil {
		return err
	}
	return f.run(ctx, e)
}

// register declares the flags of verify's scope; "" declares every scope's.
func (f *verifyFlags) register(fs *flagSet, scope string) {
	db, archive, all := scope != "archive", scope != "db", scope == "" || scope == "all"
	f.db.register(fs)
	if all {
		fs.StringVar(&f.archive, "archive", "", "the archive URL, when not given as the argument: file:///dir or s3://bucket/prefix")
		fs.DurationVar(&f.archiveLag, "archive-lag", verify.DefaultArchiveLag, "database entries older than this must be in the archive")
	}
	if archive {
		fs.StringVar(&f.endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (path-style addressing); empty means AWS")
		fs.StringVar(&f.region, "region", "", "S3 region (default: from the AWS configuration, else us-east-1)")
		fs.StringVar(&f.publicKey, "public-key", "", "required: the ed25519 public key the archive's digests (and retention's chain anchors) are signed with (the .pub file of pgtrail keygen)")
	} else {
		fs.StringVar(&f.publicKey, "public-key", "", "the archive's ed25519 public key: needed once retention pruned the database (partitions prune), to check the signed anchor the chain starts from")
	}
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.BoolVar(&f.since, "since-checkpoint", false, "start from the last verified checkpoint (needs --signing-key); a full run when there is none yet")
	fs.StringVar(&f.checkpointFile, "checkpoint-file", "", "keep the checkpoint in this file instead of the trail's VERIFY events")
	fs.StringVar(&f.signingKey, "signing-key", "", "ed25519 private key that signs checkpoints (pgtrail keygen); an intact run then leaves one")
	fs.StringVar(&f.webhook, "alert-webhook", "", "POST a JSON alert to this URL when the run finds tampering or cannot verify (default: $PGTRAIL_ALERT_WEBHOOK)")
	fs.DurationVar(&f.alertTimeout, "alert-timeout", 10*time.Second, "timeout of each webhook attempt")
	fs.IntVar(&f.alertRetries, "alert-retries", 3, "webhook retries after a failed attempt (backoff 1s, 2s, 4s, ...)")
	fs.BoolVar(&f.noRecord, "no-record", false, "do not record the run as a VERIFY audit event (e.g. on a read-only standby)")
	if archive {
		fs.IntVar(&f.workers, "workers", 0, "goroutines checking the archive or hashing database rows (0: one per CPU; an archive in S3 also has 1 to 8 readers fetching ahead, as many as keep them busy)")
	} else {
		fs.IntVar(&f.workers, "workers", 0, "goroutines hashing database rows (0: one per CPU)")
	}
	if db {
		fs.IntVar(&f.dbStreams, "db-streams", 0, fmt.Sprintf("connections reading audit.events at once, in one snapshot (0: the default, %d; with the server on this machine, one per two CPUs, at least one)", verify.DefaultDBStreams))
		fs.DurationVar(&f.maxCaptureLag, "max-capture-lag", verify.DefaultMaxCaptureLag, "exit 1 when committed changes have waited longer than this to be chained (in audit.pending, or in the slot of tables in mode wal); 0 skips the check")
		fs.StringVar(&f.slot, "slot", cdc.DefaultSlot, "the replication slot of tables in mode wal (as pgtrail stream --slot)")
	}
}

// resolve checks the positional arguments after the scope; every mistake is a usage error.
func (f *verifyFlags) resolve(e *env, pos []string) error {
	switch {
	case f.scope == "db" && len(pos) == 0:
	case f.scope == "archive" && len(pos) == 1:
		f.archiveURL = pos[0]
	case f.scope == "all" && len(pos) <= 1:
		f.archiveURL = f.archive
		if len(pos) == 1 {
			f.archiveURL = pos[0]
		}
		if f.archiveURL == "" {
			return errors.New("verify all needs the archive: verify all ARCHIVE_URL (or --archive URL)")
		}
	case f.scope == "archive" && len(pos) == 0:
		return errors.New("verify archive needs the archive: verify archive ARCHIVE_URL --public-key KEY")
	default:
		return fmt.Errorf("unexpected argument %q: %s", pos[len(pos)-1], verifySynopses[f.scope])
	}
	if f.scope != "db" && f.publicKey == "" {
		return fmt.Errorf("verify %s needs --public-key KEY (the .pub file of the key the stream signs with)", f.scope)
	}
	// verify archive reads the database only when one is named: it records the run there and
	// may keep its checkpoint there.
	f.useDB = f.scope != "archive" || f.db.url != "" || e.getenv("DATABASE_URL") != ""
	f.checkpointsDB = f.checkpointFile == "" && f.useDB
	switch {
	case f.since && f.signingKey == "":
		return errors.New("--since-checkpoint needs --signing-key: checkpoints are signed, and checked before they are trusted")
	case f.since && f.checkpointFile == "" && !f.useDB:
		return errors.New("--since-checkpoint: verify archive without a database keeps its checkpoint in --checkpoint-file PATH")
	case f.noRecord && f.signingKey != "" && f.checkpointFile == "":
		return errors.New("--no-record leaves nowhere to keep the checkpoint: add --checkpoint-file PATH")
	}
	return nil
}

// load checks the archive URL and loads the keys, before the database is reached: a wrong URL
// or key file is the first thing to hear about. Mistakes are "could not run", one line each.
func (f *verifyFlags) load(ctx context.Context) error {
	if f.scope != "db" {
		if _, err := archive.ParseURL(f.archiveURL); err != nil {
			return notRun(err)
		}
	}
	var err error
	if f.publicKey != "" {
		if f.pub, err = archive.LoadPublicKey(ctx, f.publicKey); err != nil {
			return notRun(fmt.Errorf("--public-key: %w", err))
		}
	}
	if f.signingKey != "" {
		if f.key, err = archive.LoadPrivateKey(ctx, f.signingKey); err != nil {
			return notRun(fmt.Errorf("--signing-key: %w", err))
		}
	}
	return nil
}

func (f *verifyFlags) run(ctx context.Context, e *env) error {
	var conn *pgx.Conn
	if f.useDB {
		var err error
		// Paced: verify db reads COPY on this connection too (pace.Dial).
		paced := func(cfg *pgx.ConnConfig) { cfg.DialFunc = pace.Dial(cfg.DialFunc) }
		if conn, err = f.db.connect(ctx, e, paced); err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
	}
	var sink archive.Sink
	if f.scope != "db" {
		// Not created: a mistyped archive path must fail, not verify as an empty, intact archive.
		af := archiveFlags{url: f.archiveURL, endpoint: f.endpoint, region: f.region, retention: "0"}
		var err error
		if sink, err = af.open(ctx); err != nil {
			return f.fail(ctx, e, conn, err)
		}
	}
	v := &verify.Verifier{ArchiveLag: f.archiveLag, Workers: f.workers, DBStreams: f.dbStreams}
	if f.scope != "archive" {
		pruned, err := prunedPrefix(ctx, conn, f.pub)
		if err != nil {
			return f.fail(ctx, e, conn, err)
		}
		v.Pruned = pruned
	}
	if f.since {
		cp, err := f.loadCheckpoint(ctx, e, conn)
		if err != nil {
			return f.fail(ctx, e, conn, err)
		}
		if cp == nil && len(f.skipped) == 0 {
			fmt.Fprintln(e.stderr, "pgtrail verify: no checkpoint yet: verifying everything")
		}
		v.Since = cp
	}
	if bar := newProgressBar(e.stderr, f.scope); bar != nil && !f.json {
		v.Progress = bar.update
		defer bar.clear()
	}
	var rep *verify.Report
	var err error
	switch f.scope {
	case "db":
		rep, err = v.DB(ctx, conn)
	case "archive":
		rep, err = v.Archive(ctx, sink, f.pub)
	default:
		rep, err = v.All(ctx, conn, sink, f.pub)
	}
	if err != nil {
		if errors.Is(err, verify.ErrNotArchive) {
			err = fmt.Errorf("%s: %w", f.archiveURL, err)
		}
		// Whatever stopped the check, the trail's state is unknown: "could not verify".
		return f.fail(ctx, e, conn, err)
	}
	var notes []string
	if f.scope != "archive" && f.maxCaptureLag > 0 {
		problems, err := verify.CaptureLag(ctx, conn, f.slot, f.maxCaptureLag)
		if err != nil {
			// Reading the slot needs REPLICATION: a reader's run stays a chain check.
			fmt.Fprintf(e.stderr, "pgtrail verify: warning: capture lag not checked: %s\n", oneLine(err))
		}
		if len(problems) > 0 {
			rep.Problems = append(rep.Problems, problems...)
			rep.Checkpoint = nil
		}
	}
	var cp *verify.Checkpoint
	if rep.Intact() && f.key != nil && rep.Checkpoint != nil {
		c := *rep.Checkpoint
		c.Archive = f.archiveURL
		c.VerifiedAt = rep.StartedAt
		c.Sign(f.key)
		cp = &c
		rep.Checkpoint = cp
		if f.checkpointFile != "" {
			if err := verify.WriteCheckpointFile(f.checkpointFile, cp); err != nil {
				notes = append(notes, err.Error())
			}
		}
	}
	if f.record() {
		if _, err := verify.Record(ctx, conn, f.runRecord(rep, nil, cp)); err != nil {
			notes = append(notes, err.Error())
		}
	}
	if err := f.print(e, rep); err != nil {
		notes = append(notes, err.Error())
	}
	if f.scope != "db" && rep.Intact() && rep.Files == 0 && rep.Digests == 0 && !f.since {
		// Only a new archive gets here (it holds its marker; a sink without it is ErrNotArchive).
		fmt.Fprintf(e.stderr, "pgtrail verify: %s holds nothing archived yet: a new archive\n", f.archiveURL)
	}
	if !rep.Intact() {
		f.alert(ctx, e, verify.NewAlert(f.scope, f.archiveURL, hostname(), rep, nil))
		for _, n := range notes {
			fmt.Fprintf(e.stderr, "pgtrail verify: %s\n", oneLine(errors.New(n)))
		}
		return &exitError{code: exitFailed}
	}
	if len(notes) > 0 {
		// Intact, but the run is not complete without its record or its checkpoint.
		err := fmt.Errorf("the trail is intact, but %s", strings.Join(notes, "; "))
		f.alert(ctx, e, verify.NewAlert(f.scope, f.archiveURL, hostname(), nil, err))
		return notRun(err)
	}
	return nil
}

// record reports whether the run is recorded as a VERIFY event.
func (f *verifyFlags) record() bool { return f.useDB && !f.noRecord }

// fail ends a run that could not verify: recorded (when the database answers), reported, alerted,
// exit 2.
func (f *verifyFlags) fail(ctx context.Context, e *env, conn *pgx.Conn, err error) error {
	if f.record() && conn != nil && !conn.IsClosed() {
		if _, rerr := verify.Record(ctx, conn, f.runRecord(nil, err, nil)); rerr != nil {
			err = fmt.Errorf("%w (and the run could not be recorded: %v)", err, rerr)
		}
	}
	if f.json {
		out := map[string]any{"scope": f.scope, "intact": false, "result": "could_not_verify", "error": oneLine(err)}
		json.NewEncoder(e.stdout).Encode(out)
	}
	f.alert(ctx, e, verify.NewAlert(f.scope, f.archiveURL, hostname(), nil, err))
	return notRun(err)
}

func (f *verifyFlags) runRecord(rep *verify.Report, err error, cp *verify.Checkpoint) verify.Run {
	return verify.Run{Scope: f.scope, Archive: f.archiveURL, Report: rep, Err: err, Checkpoint: cp,
		Host: hostname(), OSUser: osUser()}
}

// prunedPrefix is where the chain in the database starts when retention pruned it
// (retention.ChainStart checks the anchors); nil when nothing was pruned.
func prunedPrefix(ctx context.Context, conn *pgx.Conn, pub ed25519.PublicKey) (*verify.PrunedPrefix, error) {
	seq, h, err := retention.ChainStart(ctx, conn, pub)
	if err != nil || seq == 0 {
		return nil, err
	}
	return &verify.PrunedPrefix{Seq: seq, EntryHash: h}, nil
}

// loadCheckpoint returns the checkpoint to start from, its signature checked, or nil when there
// is none yet. A checkpoint that does not verify (forged, altered, or signed with another key)
// is reported on stderr and in the report (skipped_checkpoints) and skipped: the run starts from
// the newest one that verifies, or from the beginning. It never stops the run: a forged
// checkpoint must not turn a finding of tampering (exit 1) into "could not verify" (exit 2).
func (f *verifyFlags) loadCheckpoint(ctx context.Context, e *env, conn *pgx.Conn) (*verify.Checkpoint, error) {
	var found []verify.StoredCheckpoint
	if f.checkpointFile != "" {
		cp, err := verify.ReadCheckpointFile(ctx, f.checkpointFile)
		if err != nil && !errors.Is(err, verify.ErrBadCheckpoint) {
			return nil, err
		}
		if cp != nil || err != nil {
			found = append(found, verify.StoredCheckpoint{Checkpoint: cp, Err: err})
		}
	} else {
		var err error
		if found, err = verify.RecentCheckpoints(ctx, conn, f.scope, f.archiveURL, maxCheckpointsTried); err != nil {
			return nil, err
		}
	}
	for _, sc := range found {
		err := sc.Err
		if err == nil {
			err = sc.Verify(f.key.Public().(ed25519.PublicKey))
		}
		if err == nil {
			err = sc.Matches(f.scope, f.archiveURL)
		}
		if err == nil {
			return sc.Checkpoint, nil
		}
		where := f.checkpointFile
		switch {
		case where != "":
		case sc.Seq > 0:
			where = fmt.Sprintf("the VERIFY entry seq %d", sc.Seq)
		default:
			where = "a VERIFY entry not sealed yet"
		}
		msg := fmt.Sprintf("skipped the checkpoint in %s: %s", where, oneLine(err))
		f.skipped = append(f.skipped, msg)
		fmt.Fprintf(e.stderr, "pgtrail verify: %s\n", msg)
	}
	if len(found) > 0 {
		fmt.Fprintln(e.stderr, "pgtrail verify: no checkpoint that verifies: verifying everything")
	}
	return nil, nil
}

// maxCheckpointsTried bounds how many VERIFY entries are read looking for one that verifies.
const maxCheckpointsTried = 50

func (f *verifyFlags) alert(ctx context.Context, e *env, a verify.Alert) {
	if f.webhook == "" {
		return
	}
	w := &verify.Webhook{URL: f.webhook, Timeout: f.alertTimeout, Retries: f.alertRetries}
	if f.alertRetries == 0 {
		w.Retries = -1
	}
	if err := w.Send(context.WithoutCancel(ctx), a); err != nil {
		fmt.Fprintf(e.stderr, "pgtrail verify: %s\n", oneLine(err))
	}
}

func (f *verifyFlags) print(e *env, rep *verify.Report) error {
	if f.json {
		result := "tampered"
		if rep.Intact() {
			result = "intact"
		}
		out := struct {
			*verify.Report
			Intact  bool     `json:"intact"`
			Result  string   `json:"result"`
			Skipped []string `json:"skipped_checkpoints,omitempty"`
		}{rep, rep.Intact(), result, f.skipped}
		return json.NewEncoder(e.stdout).Encode(out)
	}
	printReport(e, rep)
	return nil
}

func printReport(e *env, rep *verify.Report) {
	w := e.stdout
	if rep.Intact() {
		fmt.Fprintf(w, "intact: %s", summary(rep))
		if rep.Since != nil {
			fmt.Fprintf(w, " since checkpoint seq %d", rep.Since.Seq)
		}
		fmt.Fprintln(w)
		for _, part := range []*verify.Report{rep.DB, rep.Archive} {
			if part != nil {
				fmt.Fprintf(w, "  %s: %s\n", part.Scope, summary(part))
			}
		}
		if rep.CrossChecked > 0 {
			fmt.Fprintf(w, "  cross-checked %d archived entries against the database\n", rep.CrossChecked)
		}
		if rep.Unsealed > 0 {
			fmt.Fprintf(w, "  %d entries not sealed yet\n", rep.Unsealed)
		}
		if rep.InProgress != "" {
			fmt.Fprintf(w, "  batch %s is being archived: not verified yet\n", rep.InProgress)
		}
		return
	}
	fmt.Fprintf(w, "%s: %d problem(s) in %d entries\n", headline(rep.Problems), len(rep.Problems), rep.Entries)
	for _, p := range rep.Problems {
		kind := strings.ReplaceAll(string(p.Kind), "_", " ")
		where := ""
		if p.Source != "" && rep.Scope == "all" {
			where = string(p.Source) + ": "
		}
		if p.Key != "" {
			fmt.Fprintf(w, "  %sseq %d: %s: %s [%s]\n", where, p.Seq, kind, p.Detail, p.Key)
		} else {
			fmt.Fprintf(w, "  %sseq %d: %s: %s\n", where, p.Seq, kind, p.Detail)
		}
	}
	if rep.Truncated {
		fmt.Fprintln(w, "  (more problems not shown)")
	}
}

// headline names what the problems are: changes waiting too long to be chained (a stopped or
// slow stream) are not tampering, and an operator paged at night must tell the two apart.
func headline(problems []verify.Problem) string {
	for _, p := range problems {
		if p.Kind != verify.CaptureLagged {
			return "TAMPERING DETECTED"
		}
	}
	return "CAPTURE LAGGING"
}

// summary is one line about what a check covered.
func summary(rep *verify.Report) string {
	s := fmt.Sprintf("%d entries", rep.Entries)
	if rep.Entries > 0 {
		s += fmt.Sprintf(" (seq %d..%d)", rep.FirstSeq, rep.LastSeq)
	}
	if rep.Scope == "db" || rep.Scope == "all" {
		s += fmt.Sprintf(", head %s", shortHash(rep.HeadHash))
	}
	if rep.Scope == "archive" || rep.Scope == "all" {
		s += ", " + plural(rep.Batches, "batch", "batches") + ", " + plural(rep.Files, "file", "files") + ", " + plural(rep.Digests, "digest", "digests")
	}
	return s + fmt.Sprintf(", %.0f entries/s", rep.EntriesPerS)
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// progressBar draws progress, rate and ETA on a terminal's last line, at most 5 times a second,
// from one second into the run on.
type progressBar struct {
	w     io.Writer
	scope string
	mu    sync.Mutex
	start time.Time
	last  time.Time
	parts map[string]verify.Progress
	shown bool
}

// newProgressBar returns a bar on w, or nil when w is not a terminal.
func newProgressBar(w io.Writer, scope string) *progressBar {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progressBar{w: w, scope: scope, start: time.Now(), parts: map[string]verify.Progress{}}
}

func (b *progressBar) update(p verify.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parts[p.Scope] = p
	now := time.Now()
	if now.Sub(b.start) < time.Second || now.Sub(b.last) < 200*time.Millisecond {
		return
	}
	b.last = now
	var done, total int64
	for _, p := range b.parts {
		done += p.Done
		total += p.Total
	}
	rate := float64(done) / now.Sub(b.start).Seconds()
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	filled := int(frac * width)
	eta := "?"
	if rate > 0 && total >= done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r\033[Kverify %s [%s%s] %3.0f%%  %s/%s entries  %s entries/s  ETA %s",
		b.scope, strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*frac,
		count(done), count(total), count(int64(rate)), eta)
	b.shown = true
}

func (b *progressBar) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// count prints n as 950, 12.3k, 4.56M.
func count(n int64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
