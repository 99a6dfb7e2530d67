package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pgtrail/pgtrail/internal/archive"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
)

// archiveSubcommands are archive's subcommands.
var archiveSubcommands = []subcommand{
	{"init", "create (or check) an S3 bucket with Object Lock, default retention and lifecycle rules; or a local archive directory (its parent must exist)", runArchiveInit},
}

func runArchive(ctx context.Context, e *env, args []string) error {
	const usage = "archive init s3://bucket/prefix | file:///dir [flags]"
	if len(args) == 0 {
		return usageError("pgtrail archive --help", errors.New("expected: archive init s3://bucket/prefix or archive init file:///dir"))
	}
	if isHelp(args[0]) {
		printGroupHelp(ctx, e, usage, archiveSubcommands, true)
		return nil
	}
	if sub := findSubcommand(archiveSubcommands, args[0]); sub != nil {
		return sub.run(ctx, e, args[1:])
	}
	return usageError("pgtrail archive --help", fmt.Errorf("unknown archive command %q (want: init)", args[0]))
}

// initReport is what "pgtrail archive init --json" prints.
type initReport struct {
	URL string `json:"url"`
	*s3sink.InitResult
}

func runArchiveInit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "archive init", "archive init s3://bucket/prefix | file:///dir [--s3-endpoint URL] [--region R] [--retention 7y] [--lock-mode COMPLIANCE|GOVERNANCE] [--glacier-after 90d] [--json]\n\n"+
		"s3://: creates the bucket with Object Lock (or checks it), sets its default retention and a lifecycle\n"+
		"that moves objects to Glacier after --glacier-after and expires them after --retention.\n"+
		"file:///dir: creates the directory (its parent must exist) and the archive's marker; the S3 flags do not apply.")
	endpoint := fs.String("s3-endpoint", "", "S3-compatible endpoint URL (path-style addressing); empty means AWS")
	region := fs.String("region", "", "region of the bucket (default: from the AWS configuration, else us-east-1)")
	retentionFlag := fs.String("retention", "7y", "default Object Lock retention, and the age at which lifecycle expires objects (y = 366 days)")
	lockMode := fs.String("lock-mode", s3sink.LockCompliance, "Object Lock mode: COMPLIANCE (nobody can delete early) or GOVERNANCE")
	glacierFlag := fs.String("glacier-after", "90d", "move objects to S3 Glacier at this age; 0 never")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fs.usageError(errors.New("expected: archive init s3://bucket/prefix or archive init file:///dir"))
	}
	u, err := archive.ParseURL(pos[0])
	if err != nil {
		return notRun(err)
	}
	if u.Scheme == "file" {
		return runArchiveInitDir(ctx, e, pos[0], filepath.FromSlash(u.Path), *asJSON)
	}
	retention, err := archive.ParseRetention(*retentionFlag)
	if err != nil {
		return notRun(fmt.Errorf("--retention: %w", err))
	}
	if retention < archive.Day {
		return notRun(fmt.Errorf("--retention %s: at least one day (S3 default retention counts whole days)", *retentionFlag))
	}
	lock := s3sink.Config{LockMode: *lockMode}
	if err := lock.Validate(); err != nil {
		return notRun(fmt.Errorf("--lock-mode: %w", err))
	}
	glacier, err := archive.ParseRetention(*glacierFlag)
	if err != nil {
		return notRun(fmt.Errorf("--glacier-after: %w", err))
	}
	if glacier >= retention {
		return notRun(fmt.Errorf("--glacier-after %s must be shorter than --retention %s", *glacierFlag, *retentionFlag))
	}

	client, err := s3sink.NewClient(ctx, s3sink.ClientConfig{Endpoint: *endpoint, Region: *region})
	if err != nil {
		return notRun(err)
	}
	res, err := s3sink.InitBucket(ctx, client, u.Host, u.Path, s3sink.InitConfig{Region: client.Options().Region,
		Retention: retention, LockMode: lock.LockMode, GlacierAfter: glacier})
	if err != nil {
		if archive.IsRetryable(err) || s3sink.IsAuthError(err) {
			return notRun(err)
		}
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "pgtrail archive init: warning: %s\n", w)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(initReport{URL: pos[0], InitResult: res})
	}
	printInit(e, pos[0], res, *endpoint, *retentionFlag)
	return nil
}

// initDirReport is what "pgtrail archive init file:///dir --json" prints.
type initDirReport struct {
	URL       string `json:"url"`
	Directory string `json:"directory"`
	Created   bool   `json:"created"`
}

// runArchiveInitDir makes a local archive: the directory (its parent must exist) and the
// archive's marker. The S3 flags do not apply.
func runArchiveInitDir(ctx context.Context, e *env, url, dir string, asJSON bool) error {
	_, statErr := os.Stat(dir)
	sink, err := archive.Open(ctx, url, archive.Options{Create: true})
	if err != nil {
		return notRun(err)
	}
	if err := archive.Mark(ctx, sink); err != nil {
		return err
	}
	rep := initDirReport{URL: url, Directory: dir, Created: errors.Is(statErr, fs.ErrNotExist)}
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(rep)
	}
	if rep.Created {
		fmt.Fprintf(e.stdout, "created %s: a new pgtrail archive\n", dir)
	} else {
		fmt.Fprintf(e.stdout, "%s exists: a pgtrail archive\n", dir)
	}
	fmt.Fprintf(e.stdout, "next: pgtrail stream --archive %s --signing-key KEY\n", url)
	return nil
}

func printInit(e *env, url string, res *s3sink.InitResult, endpoint, retention string) {
	state := "exists, Object Lock enabled"
	if res.Created {
		state = "created with Object Lock"
	}
	fmt.Fprintf(e.stdout, "bucket %s: %s\n", res.Bucket, state)
	fmt.Fprintf(e.stdout, "default retention: %s, %s\n", res.LockMode, plural(int64(res.RetentionDays), "day", "days"))
	scope := "the whole bucket"
	if res.Prefix != "" {
		scope = res.Prefix + "/"
	}
	transition := "no Glacier transition"
	if res.GlacierDays > 0 {
		transition = "to Glacier after " + plural(int64(res.GlacierDays), "day", "days")
	}
	if res.Lifecycle {
		fmt.Fprintf(e.stdout, "lifecycle for %s: %s, expire after %s\n", scope, transition, plural(int64(res.ExpireDays), "day", "days"))
	} else {
		fmt.Fprintf(e.stdout, "lifecycle for %s: NOT applied (see warning)\n", scope)
	}
	flags := ""
	if endpoint != "" {
		flags = " --s3-endpoint " + endpoint
	}
	fmt.Fprintf(e.stdout, "ready: pgtrail stream --archive %s --retention %s%s\n", url, retention, flags)
}

// plural is n and the word for n of it: "1 day", "2 days".
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
