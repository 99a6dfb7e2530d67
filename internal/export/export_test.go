package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/export"
	"github.com/pgtrail/pgtrail/internal/search"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

var str = eventtest.Str

func setup(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE customers (id int PRIMARY KEY, email text, plan text)`)
	testdb.Exec(t, db, `SELECT audit.enable('customers', exclude_columns => '{}', pii_columns => '{email}')`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'acme'; SET LOCAL pgtrail.actor_id = '=cmd|calc';
		INSERT INTO customers VALUES (1, 'alice@example.com', 'free'), (2, 'carol@example.com', 'pro'); COMMIT`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'globex'; INSERT INTO customers VALUES (3, 'bob@example.com', 'free'); COMMIT`)
	testdb.Seal(t, db)
	return db, url
}

func connect(t *testing.T, url, user string, params map[string]string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		cfg.User = user
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exportEvents returns the sealed EXPORT events.
func exportEvents(t *testing.T, db *pgxpool.Pool) []pgtrail.Event {
	t.Helper()
	testdb.Seal(t, db)
	var out []pgtrail.Event
	err := chain.Read(context.Background(), db, 1, math.MaxInt64, func(e *pgtrail.Event) error {
		if e.ActionType == export.ActionType {
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExport_CSV exports one tenant's events and checks the file against the record of it: who,
// which tenant, how many rows, the file's SHA-256; and that spreadsheet formulas in the data are
// defused.
func TestExport_CSV(t *testing.T) {
	db, url := setup(t)
	path := filepath.Join(t.TempDir(), "acme.csv")
	res, err := export.Export(context.Background(), connect(t, url, "", nil), export.Request{
		Filter: search.Filter{Tenant: str("acme")}, Format: export.CSV, Path: path,
		RequestedBy: "investigator-1", Reason: "ticket-7",
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if res.Rows != 2 || res.SHA256 != hex.EncodeToString(sum[:]) || res.Masked {
		t.Errorf("result %+v; want 2 rows, the file's hash %x, unmasked", res, sum)
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(records) != 3 || strings.Join(records[0], ",") != strings.Join(search.CSVColumns, ",") {
		t.Fatalf("CSV: %v, %d records, header %v", err, len(records), records)
	}
	if actor := records[1][8]; actor != "'=cmd|calc" {
		t.Errorf("actor cell %q: a formula must be defused with a leading quote", actor)
	}
	evs := exportEvents(t, db)
	if len(evs) != 1 {
		t.Fatalf("%d EXPORT events, want 1", len(evs))
	}
	e := evs[0]
	if e.ActorID != "investigator-1" || e.TenantID == nil || *e.TenantID != "acme" || e.ResourceID == nil || *e.ResourceID != res.SHA256 ||
		!strings.Contains(*e.Details, `"rows": 2`) || !strings.Contains(*e.Details, `"reason": "ticket-7"`) || !strings.Contains(*e.Details, `"tenant": "acme"`) {
		t.Errorf("EXPORT event: actor %s tenant %v resource %v details %s", e.ActorID, e.TenantID, e.ResourceID, *e.Details)
	}
}

// TestExport_ParquetFromArchive exports from an archive: the Parquet report holds the same
// entries, hashes included, as the database, and the export is still recorded in the database.
func TestExport_ParquetFromArchive(t *testing.T) {
	db, url := setup(t)
	var all []pgtrail.Event
	chain.Read(context.Background(), db, 1, math.MaxInt64, func(e *pgtrail.Event) error { all = append(all, *e); return nil })
	sink := eventtest.Archive(t, all, 2)
	path := filepath.Join(t.TempDir(), "customers.parquet")
	res, err := export.Export(context.Background(), connect(t, url, "", nil), export.Request{
		Filter: search.Filter{ResourceType: "public.customers"}, Format: export.Parquet, Path: path,
		Sink: sink, Source: "file:///archive",
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := export.ReadParquet(data)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || len(got) != 3 || res.Source != "file:///archive" {
		t.Fatalf("exported %d rows (%d read back) from %s, want 3 from the archive", res.Rows, len(got), res.Source)
	}
	for _, e := range got {
		want := all[e.Seq-1]
		if !bytes.Equal(pgtrail.AppendCanonical(nil, &e), pgtrail.AppendCanonical(nil, &want)) || !bytes.Equal(e.EntryHash, want.EntryHash) {
			t.Errorf("seq %d differs from the database's entry", e.Seq)
		}
	}
	if evs := exportEvents(t, db); len(evs) != 1 || !strings.Contains(*evs[0].Details, `"source": "file:///archive"`) {
		t.Errorf("EXPORT events %v", evs)
	}
}

// TestExport_Masked exports as a pgtrail_reader: the file holds masked values only, and the
// record says so.
func TestExport_Masked(t *testing.T) {
	db, url := setup(t)
	role := "reader_export"
	testdb.Exec(t, db, "CREATE ROLE "+role+" LOGIN IN ROLE pgtrail_reader")
	t.Cleanup(func() { db.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	path := filepath.Join(t.TempDir(), "r.csv")
	res, err := export.Export(context.Background(), connect(t, url, role, nil), export.Request{Format: export.CSV, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !res.Masked || strings.Contains(string(data), "@example.com") {
		t.Errorf("reader's export: masked=%v, file:\n%s", res.Masked, data)
	}
	if evs := exportEvents(t, db); len(evs) != 1 || !strings.Contains(*evs[0].Details, `"masked": true`) || evs[0].DBUser != role {
		t.Errorf("EXPORT events %+v", evs)
	}
}

// TestExport_Refused tries exports that must not happen or must not leave a report: an existing
// file (it must keep its content), a record that cannot be written (no report may appear, no
// temporary file may stay), a bad format, a missing directory.
func TestExport_Refused(t *testing.T) {
	db, url := setup(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.csv")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		conn   *pgx.Conn
		req    export.Request
		errIs  error
		errHas string
	}{
		{"FileExists", connect(t, url, "", nil), export.Request{Format: export.CSV, Path: existing}, export.ErrExists, ""},
		{"RecordFails", connect(t, url, "", map[string]string{"default_transaction_read_only": "on"}),
			export.Request{Format: export.CSV, Path: filepath.Join(dir, "unrecorded.csv")}, nil, "record the export"},
		{"BadFormat", connect(t, url, "", nil), export.Request{Format: "xlsx", Path: filepath.Join(dir, "x.xlsx")}, nil, "want csv or parquet"},
		{"NoDirectory", connect(t, url, "", nil), export.Request{Format: export.CSV, Path: filepath.Join(dir, "missing", "x.csv")}, nil, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := export.Export(context.Background(), c.conn, c.req)
			if err == nil || (c.errIs != nil && !errors.Is(err, c.errIs)) || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("err = %v, want %v / %q", err, c.errIs, c.errHas)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Errorf("existing file now holds %q", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only existing.csv: no report without its record, no temporary files", names)
	}
	if evs := exportEvents(t, db); len(evs) != 0 {
		t.Errorf("%d EXPORT events recorded for refused exports", len(evs))
	}
}
