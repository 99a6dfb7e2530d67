package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail/internal/export"
	"github.com/pgtrail/pgtrail/internal/search"
)

func runExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export", "export --out PATH [--format csv|parquet] [filters as for search] [--archive URL] [--requested-by NAME] [--reason TEXT] [--json]")
	var db dbFlags
	db.register(fs)
	var ff filterFlags
	ff.register(fs, 0)
	var af readArchiveFlags
	af.register(fs, "export from this archive instead of the database (the export is still recorded in the database)")
	out := fs.String("out", "", "the report file to create (never overwritten)")
	format := fs.String("format", "", "csv or parquet (default: from --out's extension, else csv)")
	requestedBy := fs.String("requested-by", "", "who the export is for: the EXPORT event's actor_id (default: the database user)")
	reason := fs.String("reason", "", "why (a ticket, a legal request): recorded with the export")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Errorf("unexpected argument %q: filters are flags", pos[0]))
	}
	if *out == "" {
		return fs.usageError(errors.New("--out is required: the report goes to a file, which appears only once the export is recorded"))
	}
	f := export.Format(strings.ToLower(*format))
	if f == "" {
		f = export.CSV
		if strings.EqualFold(filepath.Ext(*out), ".parquet") {
			f = export.Parquet
		}
	}
	filter, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	req := export.Request{Filter: filter, Format: f, Path: *out, RequestedBy: *requestedBy, Reason: *reason}
	if err := req.Validate(); err != nil {
		return notRun(err)
	}
	if af.url != "" {
		if req.Sink, req.Source, err = af.open(ctx); err != nil {
			return err
		}
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := export.Export(ctx, conn, req)
	switch {
	case errors.Is(err, search.ErrNoAccess):
		return notRun(err)
	case err != nil:
		return permissionOrFail("export", err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	masked := ""
	if res.Masked {
		masked = ", masked"
	}
	fmt.Fprintf(e.stdout, "exported %d event(s) from %s%s to %s (%s, sha256 %s); recorded as EXPORT event %s\n",
		res.Rows, res.Source, masked, res.Path, res.Format, res.SHA256, res.EventID)
	if n := len(res.Unverified); n > 0 {
		fmt.Fprintf(e.stdout, "%d archived file(s) left out: no digest covers them (an upload in progress, or added by someone: pgtrail verify archive says which); --include-unverified reads them\n", n)
	}
	return nil
}
