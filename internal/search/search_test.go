package search_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/search"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

var str = eventtest.Str

// archiveDB copies the sealed trail into a new file archive.
func archiveDB(t *testing.T, f *fixture) *countingSink {
	t.Helper()
	var events []pgtrail.Event
	err := chain.Read(context.Background(), f.db, 1, math.MaxInt64, func(e *pgtrail.Event) error {
		events = append(events, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &countingSink{Sink: eventtest.Archive(t, events, 3)}
}

// countingSink records which objects were read.
type countingSink struct {
	archive.Sink
	mu    sync.Mutex
	gets  []string
	lists []string
}

// (Digests are read for every batch a search touches: counted apart from the data files.)
func (s *countingSink) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	if !strings.HasPrefix(key, archive.DigestsPrefix) {
		s.gets = append(s.gets, key)
	}
	s.mu.Unlock()
	return s.Sink.Get(ctx, key)
}

func (s *countingSink) List(ctx context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	if !strings.HasPrefix(prefix, archive.DigestsPrefix) {
		s.lists = append(s.lists, prefix)
	}
	s.mu.Unlock()
	return s.Sink.List(ctx, prefix)
}

func summary(res *search.Result) string {
	var parts []string
	for _, e := range res.Events {
		parts = append(parts, e.ActionType+"@"+deref(e.TenantID))
	}
	return strings.Join(parts, " ")
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// TestSearch_Filters runs each filter against the database and against an archive of the same
// trail: both must return the same events, in the same order.
func TestSearch_Filters(t *testing.T) {
	f := setup(t)
	testdb.Exec(t, f.db, `SET pgtrail.tenant_id = 'acme'; SET pgtrail.actor_id = 'mallory';
		SELECT audit.log_event('FAILED_LOGIN', 'session', NULL, 'FAILURE')`)
	testdb.Seal(t, f.db)
	sink := archiveDB(t, f)
	ctx := context.Background()
	cases := []struct {
		name      string
		filter    search.Filter
		want      string
		truncated bool
	}{
		{"Actor", search.Filter{Actor: "alice"}, "CREATE@acme UPDATE@acme VIEW_PII@acme", false},
		{"Resource", search.Filter{ResourceType: "public.customers", ResourceID: str("1")}, "CREATE@acme UPDATE@acme VIEW_PII@acme", false},
		{"ResourceType", search.Filter{ResourceType: "public.customers"}, "CREATE@acme UPDATE@acme VIEW_PII@acme CREATE@globex", false},
		{"ActionsLowerCase", search.Filter{Actions: []string{"create", "update"}}, "CREATE@acme UPDATE@acme CREATE@globex", false},
		{"Outcome", search.Filter{Outcome: "failure"}, "FAILED_LOGIN@acme", false},
		{"Tenant", search.Filter{Tenant: str("globex")}, "CREATE@globex", false},
		{"NoTenant", search.Filter{Tenant: str(search.NoTenant), Actions: []string{"LOGIN"}}, "LOGIN@-", false},
		{"Future", search.Filter{Since: time.Now().Add(time.Hour)}, "", false},
		{"Past", search.Filter{Until: time.Now().Add(-time.Hour)}, "", false},
		{"Limit", search.Filter{Tenant: str("acme"), Limit: 2}, "CREATE@acme UPDATE@acme", true},
		{"NewestFirst", search.Filter{Tenant: str("acme"), Limit: 1, NewestFirst: true}, "FAILED_LOGIN@acme", true},
		{"Everything", search.Filter{Actor: "alice", ResourceType: "public.customers", ResourceID: str("1"), Actions: []string{"UPDATE"},
			Outcome: "SUCCESS", Tenant: str("acme"), Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)}, "UPDATE@acme", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := search.DB(ctx, f.db, c.filter)
			if err != nil {
				t.Fatalf("database: %v", err)
			}
			arch, err := search.Archive(ctx, sink, "file:///archive", c.filter)
			if err != nil {
				t.Fatalf("archive: %v", err)
			}
			for _, r := range []*search.Result{db, arch} {
				if got := summary(r); got != c.want || r.Truncated != c.truncated {
					t.Errorf("%s: %q truncated=%v, want %q truncated=%v", r.Source, got, r.Truncated, c.want, c.truncated)
				}
			}
			for i := range min(len(db.Events), len(arch.Events)) {
				a, b := db.Events[i], arch.Events[i]
				if !bytes.Equal(pgtrail.AppendCanonical(nil, &a), pgtrail.AppendCanonical(nil, &b)) || !bytes.Equal(a.EntryHash, b.EntryHash) {
					t.Errorf("event %d differs between the database and the archive:\n%+v\n%+v", i, a, b)
				}
			}
		})
	}
	bad := []search.Filter{
		{Outcome: "maybe"},
		{ResourceID: str("1")},
		{Since: time.Now(), Until: time.Now().Add(-time.Hour)},
		{Limit: -1},
	}
	for i, b := range bad {
		if _, err := search.DB(ctx, f.db, b); err == nil {
			t.Errorf("bad filter %d %+v accepted", i, b)
		}
	}
}

// TestSearch_Access searches as each kind of role: the reader gets masked events, the tenant
// reader only its tenant, a role without grants an error, not an empty result.
func TestSearch_Access(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	reader, _ := f.connect(t, f.reader)
	res, err := search.DB(ctx, reader, search.Filter{ResourceType: "public.customers"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Masked || len(res.Events) != 4 || res.Events[0].EntryHash != nil {
		t.Errorf("reader: masked=%v, %d events, hash %x; want masked, 4 events, no hashes", res.Masked, len(res.Events), res.Events[0].EntryHash)
	}
	var out bytes.Buffer
	if err := search.WriteJSON(&out, res); err != nil {
		t.Fatal(err)
	}
	if l := leaks(out.String()); len(l) > 0 {
		t.Errorf("reader's JSON shows %v", l)
	}
	acme, _ := f.connect(t, f.acmeReader)
	res, err = search.DB(ctx, acme, search.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Events {
		if e.TenantID == nil || *e.TenantID != "acme" {
			t.Errorf("acme reader found an event of tenant %s", deref(e.TenantID))
		}
	}
	nobody, _ := f.connect(t, f.nobody)
	if _, err := search.DB(ctx, nobody, search.Filter{}); !errors.Is(err, search.ErrNoAccess) {
		t.Errorf("role without grants: err = %v, want ErrNoAccess", err)
	}
}

// TestQuery_UsesIndexes explains the common searches with sequential scans disabled, as the
// superuser on audit.events and as a reader through the masked view, and checks that each reads
// the index meant for it on every partition and scans no partition sequentially. (With a handful
// of rows the planner would rightly prefer sequential scans; disabling them shows that the
// query's shape lets the index serve it.)
func TestQuery_UsesIndexes(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	since := time.Now().Add(-30 * 24 * time.Hour)
	cases := []struct {
		name   string
		filter search.Filter
		index  string
	}{
		{"Actor", search.Filter{Actor: "alice", Since: since}, "audit.events_actor_idx"},
		{"Resource", search.Filter{ResourceType: "public.customers", ResourceID: str("1")}, "audit.events_resource_idx"},
		{"Actions", search.Filter{Actions: []string{"LOGIN", "FAILED_LOGIN"}, Since: since}, "audit.events_action_idx"},
		{"Tenant", search.Filter{Tenant: str("acme"), Since: since}, "audit.events_tenant_idx"},
	}
	reader, _ := f.connect(t, f.reader)
	super, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer super.Release()
	for _, conn := range []struct {
		name string
		rel  search.Relation
		q    search.Querier
		exec func(string) error
	}{
		{"Superuser", search.Events, super, func(s string) error { _, err := super.Exec(ctx, s); return err }},
		{"Reader", search.EventsMasked, reader, func(s string) error { _, err := reader.Exec(ctx, s); return err }},
	} {
		if err := conn.exec("SET enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(conn.name+"/"+c.name, func(t *testing.T) {
				sql, args := search.Query(&c.filter, conn.rel, 100)
				var plan []map[string]any
				if err := conn.q.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
					t.Fatalf("explain: %v", err)
				}
				indexes, seqScans := planScans(plan[0]["Plan"].(map[string]any))
				if len(seqScans) > 0 {
					t.Errorf("sequential scans of %v", seqScans)
				}
				if len(indexes) == 0 {
					t.Fatalf("no index used: %v", plan)
				}
				for _, idx := range indexes {
					var parent string
					if err := f.db.QueryRow(ctx, `SELECT COALESCE((SELECT inhparent::regclass::text FROM pg_inherits
					      WHERE inhrelid = ('audit.' || quote_ident($1))::regclass), 'audit.' || $1)`, idx).Scan(&parent); err != nil {
						t.Fatal(err)
					}
					if parent != c.index {
						t.Errorf("uses index %s (of %s), want one of %s", idx, parent, c.index)
					}
				}
			})
		}
	}
}

// planScans returns the index names and the sequentially scanned audit.events partitions of a
// plan tree.
func planScans(node map[string]any) (indexes, seqScans []string) {
	rel, _ := node["Relation Name"].(string)
	if name, ok := node["Index Name"].(string); ok && strings.HasPrefix(rel, "events") {
		indexes = append(indexes, name)
	}
	if node["Node Type"] == "Seq Scan" {
		if strings.HasPrefix(rel, "events") {
			seqScans = append(seqScans, rel)
		}
	}
	children, _ := node["Plans"].([]any)
	for _, c := range children {
		i, s := planScans(c.(map[string]any))
		indexes, seqScans = append(indexes, i...), append(seqScans, s...)
	}
	return indexes, seqScans
}

// TestFiles_PrunesByPartition searches an archive spread over tenants and days and checks that
// only the files of the tenant and days asked for are read, and that listing stays within the
// tenant's prefix.
func TestFiles_PrunesByPartition(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 3, d, 12, 0, 0, 0, time.UTC) }
	var evs []pgtrail.Event
	for d := 1; d <= 10; d++ {
		for _, tenant := range []*string{str("acme"), str("globex"), nil} {
			evs = append(evs, pgtrail.Event{OccurredAt: day(d), TenantID: tenant, ActorID: "u", ActionType: "LOGIN", ResourceType: "session"})
		}
	}
	sink := &countingSink{Sink: eventtest.Archive(t, eventtest.Chain(evs), 6)}
	ctx := context.Background()
	cases := []struct {
		name     string
		filter   search.Filter
		days     []int
		tenants  []string
		prefixes int
	}{
		{"TenantAndPeriod", search.Filter{Tenant: str("acme"), Since: day(3), Until: day(6).Add(time.Second)}, []int{3, 4, 5, 6}, []string{"acme"}, 4},
		{"PeriodEndsAtMidnight", search.Filter{Tenant: str("acme"), Since: day(3), Until: time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC)}, []int{3, 4}, []string{"acme"}, 2},
		{"NoTenant", search.Filter{Tenant: str(search.NoTenant), Since: day(9)}, []int{9, 10}, []string{"_none"}, 1},
		{"AllTenants", search.Filter{Since: day(10)}, []int{10}, []string{"_none", "acme", "globex"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink.gets, sink.lists = nil, nil
			res, err := search.Archive(ctx, sink, "file:///a", c.filter)
			if err != nil {
				t.Fatal(err)
			}
			var days []int
			tenants := map[string]bool{}
			for _, k := range sink.gets {
				file, ok := search.ParseFileKey(k)
				if !ok {
					t.Fatalf("read %s, not a data file", k)
				}
				days = append(days, file.Day.Day())
				tenants[file.Tenant] = true
			}
			slices.Sort(days)
			days = slices.Compact(days)
			var ts []string
			for tn := range tenants {
				ts = append(ts, tn)
			}
			slices.Sort(ts)
			if !slices.Equal(days, c.days) || !slices.Equal(ts, c.tenants) {
				t.Errorf("read days %v of tenants %v, want days %v of %v", days, ts, c.days, c.tenants)
			}
			if len(sink.lists) != c.prefixes {
				t.Errorf("listed %v, want %d prefix(es)", sink.lists, c.prefixes)
			}
			if len(res.Events) != len(c.days)*len(c.tenants) {
				t.Errorf("found %d events, want %d", len(res.Events), len(c.days)*len(c.tenants))
			}
		})
	}
	// A limit stops reading at the day that fills it.
	sink.gets = nil
	res, err := search.Archive(ctx, sink, "file:///a", search.Filter{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || len(res.Events) != 4 || len(sink.gets) > 6 {
		t.Errorf("limit 4: %d events, truncated=%v, read %d files; want 4, truncated, at most the 6 files of two days", len(res.Events), res.Truncated, len(sink.gets))
	}
}

// TestWriteTable_OneLinePerEvent writes events whose values hold newlines and tabs: each event
// must stay one line, so that an application's data cannot forge rows of the report.
func TestWriteTable_OneLinePerEvent(t *testing.T) {
	res := &search.Result{Source: "database", Events: []pgtrail.Event{
		{Seq: 1, OccurredAt: time.Unix(0, 0), ActorID: "evil\n2024-01-01 00:00:00.000  2  acme  admin  LOGIN", ActionType: "LOGIN", ResourceType: "s\tx"},
	}}
	var out bytes.Buffer
	if err := search.WriteTable(&out, res); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 3 {
		t.Errorf("table has %d lines, want 3 (header, event, note):\n%s", lines, out.String())
	}
	var csvOut bytes.Buffer
	cw := search.NewCSVWriter(&csvOut)
	cw.EscapeFormulas = true
	e := res.Events[0]
	e.ActorID = "=HYPERLINK(\"http://x\")"
	if err := cw.Write(&e); err != nil {
		t.Fatal(err)
	}
	cw.Flush()
	if !strings.Contains(csvOut.String(), `'=HYPERLINK`) {
		t.Errorf("formula not escaped: %s", csvOut.String())
	}
	var js bytes.Buffer
	if err := search.WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Count  int `json:"count"`
		Events []search.Record
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Count != 1 || back.Events[0].ActorID != res.Events[0].ActorID {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}

// TestArchive_OnlyWhatDigestsCover: a writer of the archive adds a data file no digest covers
// (past the archive's end), or edits one a digest covers. search (and export, query, which read
// the same files) served their rows. What must survive: the added file's rows are left out and
// named (Result.Unverified), the edited file is refused (ErrAltered), and --include-unverified
// reads both, as asked.
func TestArchive_OnlyWhatDigestsCover(t *testing.T) {
	for _, listings := range []int{32, 0} { // digests listed batch by batch, and all at once
		t.Run(fmt.Sprint("MaxDigestListings", listings), func(t *testing.T) {
			defer search.SetMaxDigestListings(listings)()
			testOnlyWhatDigestsCover(t)
		})
	}
}

func testOnlyWhatDigestsCover(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sink, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var evs []pgtrail.Event
	for i := range 6 {
		evs = append(evs, pgtrail.Event{OccurredAt: day.Add(time.Duration(i) * time.Minute), ActorID: "u", ActionType: "LOGIN", ResourceType: "session"})
	}
	eventtest.Append(t, sink, eventtest.Chain(evs), 3)
	keys, err := sink.List(ctx, archive.EventsPrefix)
	if err != nil || len(keys) != 2 {
		t.Fatalf("archive files %v, %v", keys, err)
	}
	data, err := sink.Get(ctx, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	planted := strings.Replace(keys[1], path.Base(keys[1]), "00000000000000005000-00000000000000005002.parquet", 1)
	if err := sink.Put(ctx, planted, data); err != nil {
		t.Fatal(err)
	}
	res, err := search.Archive(ctx, sink, "file:///a", search.Filter{})
	if err != nil || len(res.Events) != 6 || !slices.Equal(res.Unverified, []string{planted}) {
		t.Fatalf("with a file no digest covers: %v, %d events, unverified %v; want 6 and the planted file named", err, len(res.Events), res.Unverified)
	}
	if res, err := search.Archive(ctx, sink, "file:///a", search.Filter{IncludeUnverified: true}); err != nil || len(res.Events) != 9 {
		t.Fatalf("--include-unverified: %v, %d events, want 9", err, len(res.Events))
	}
	// A covered file edited behind the sink's back.
	p := filepath.Join(dir, filepath.FromSlash(keys[0]))
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := search.Archive(ctx, sink, "file:///a", search.Filter{}); !errors.Is(err, search.ErrAltered) {
		t.Errorf("with an edited file: err = %v, want ErrAltered", err)
	}
	if _, err := search.Archive(ctx, sink, "file:///a", search.Filter{IncludeUnverified: true}); err != nil {
		t.Errorf("--include-unverified with an edited file: %v", err)
	}
}
