package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/search"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// filterFlags are the search filters search and export share.
type filterFlags struct {
	actor, resource, actions, outcome, tenant, since, until string
	limit                                                   int
	newestFirst                                             bool
	includeUnverified                                       bool
}

func (f *filterFlags) register(fs *flagSet, defaultLimit int) {
	fs.StringVar(&f.actor, "actor", "", "actor_id")
	fs.StringVar(&f.resource, "resource", "", "TYPE[:ID]: a table (schema.table) and primary key, or an application event's pair; split at the first colon")
	fs.StringVar(&f.actions, "action", "", "action types, comma-separated (e.g. LOGIN,FAILED_LOGIN)")
	fs.StringVar(&f.outcome, "outcome", "", "SUCCESS, FAILURE or UNAUTHORIZED")
	fs.StringVar(&f.tenant, "tenant", "", "tenant_id (_none: events without one)")
	fs.StringVar(&f.since, "since", "", "from this time on: an age (30d, 12h, 13mo) or a timestamp (2024-01-31, RFC 3339); UTC when no zone")
	fs.StringVar(&f.until, "until", "", "before this time (same forms as --since)")
	fs.IntVar(&f.limit, "limit", defaultLimit, "at most this many events; 0 for all")
	fs.BoolVar(&f.newestFirst, "newest-first", false, "newest events first (default: oldest first)")
	fs.BoolVar(&f.includeUnverified, "include-unverified", false, "with an archive: also read data files no digest covers (an upload in progress, or files someone added), and files without checking them against their digests")
}

// filter builds the search filter; errors are usage errors.
func (f *filterFlags) filter(now time.Time) (search.Filter, error) {
	sf := search.Filter{Actor: f.actor, Outcome: f.outcome, Limit: f.limit, NewestFirst: f.newestFirst, IncludeUnverified: f.includeUnverified}
	if f.resource != "" {
		sf.ResourceType, sf.ResourceID = search.ParseResource(f.resource)
	}
	if f.actions != "" {
		sf.Actions = strings.Split(f.actions, ",")
	}
	if f.tenant != "" {
		sf.Tenant = &f.tenant
	}
	var err error
	if f.since != "" {
		if sf.Since, err = timeexpr.ParseTime(f.since, now); err != nil {
			return sf, notRun(fmt.Errorf("--since: %w", err))
		}
	}
	if f.until != "" {
		if sf.Until, err = timeexpr.ParseTime(f.until, now); err != nil {
			return sf, notRun(fmt.Errorf("--until: %w", err))
		}
	}
	if err := sf.Normalize(); err != nil {
		return sf, notRun(err)
	}
	return sf, nil
}

// readArchiveFlags open an archive for reading: no retention or encryption settings.
type readArchiveFlags struct {
	url, endpoint, region string
}

func (a *readArchiveFlags) register(fs *flagSet, usage string) {
	fs.StringVar(&a.url, "archive", "", usage)
	fs.StringVar(&a.endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (path-style addressing); empty means AWS")
	fs.StringVar(&a.region, "region", "", "S3 region (default: from the AWS configuration, else us-east-1)")
}

// open returns the archive, which must exist, and its URL; failures are "could not run".
func (a *readArchiveFlags) open(ctx context.Context) (archive.Sink, string, error) {
	sink, err := archive.Open(ctx, a.url, archive.Options{Endpoint: a.endpoint, Region: a.region})
	if err != nil {
		return nil, "", notRun(err)
	}
	return sink, a.url, nil
}

func runSearch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "search", "search [--actor ID] [--resource TYPE[:ID]] [--action A,B] [--outcome O] [--tenant T] [--since 30d] [--until TIME] [--limit N] [--archive URL] [--json|--csv]\n\nSearches the database (index-backed), or the archive with --archive (partition-pruned). Times\nare an age back from now (30d, 12h, 13mo) or a timestamp (2024-01-31, RFC 3339), UTC when no zone.")
	var db dbFlags
	db.register(fs)
	var ff filterFlags
	ff.register(fs, 1000)
	var af readArchiveFlags
	af.register(fs, "search this archive (file:///dir or s3://bucket/prefix) instead of the database")
	asJSON := fs.Bool("json", false, "print a JSON object with the events")
	asCSV := fs.Bool("csv", false, "print CSV (raw values)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Errorf("unexpected argument %q: filters are flags", pos[0]))
	}
	if *asJSON && *asCSV {
		return notRun(errors.New("--json and --csv exclude each other"))
	}
	filter, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	var res *search.Result
	if af.url != "" {
		sink, url, err := af.open(ctx)
		if err != nil {
			return err
		}
		if res, err = search.Archive(ctx, sink, url, filter); err != nil {
			return err
		}
	} else {
		conn, err := db.connect(ctx, e)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		res, err = search.DB(ctx, conn, filter)
		if errors.Is(err, search.ErrNoAccess) {
			return notRun(err)
		}
		if err != nil {
			return permissionOrFail("search", err)
		}
	}
	switch {
	case *asJSON:
		return search.WriteJSON(e.stdout, res)
	case *asCSV:
		return search.WriteCSV(e.stdout, res)
	}
	return search.WriteTable(e.stdout, res)
}
