package pgtrail_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// TestColumns_MatchTheTable: pgtrail.Columns is audit.events' columns in the table's order, and
// the archive's Parquet files have the same columns in the same order. A migration that adds a
// column fails here until the column table has it.
func TestColumns_MatchTheTable(t *testing.T) {
	db, _ := testdb.New(t)
	rows, err := db.Query(context.Background(), `SELECT attname::text FROM pg_attribute
	  WHERE attrelid = 'audit.events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	if err != nil {
		t.Fatal(err)
	}
	table, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var cols, files []string
	for _, c := range pgtrail.Columns {
		cols = append(cols, c.Name)
	}
	for _, c := range archive.Columns() {
		files = append(files, c.Name)
	}
	if !reflect.DeepEqual(cols, table) {
		t.Errorf("pgtrail.Columns %v, audit.events %v", cols, table)
	}
	if !reflect.DeepEqual(files, table) {
		t.Errorf("archive files' columns %v, audit.events %v", files, table)
	}
}

// TestEvent_SetText: an entry read from its columns' text output forms (what pgoutput and COPY's
// text format send) is the entry chain.Read reads, NULLs, inet, arrays, jsonb and hashes
// included.
func TestEvent_SetText(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, name text); SELECT audit.enable('items');
		SET pgtrail.actor_ip = '10.1.2.3'; SET pgtrail.tenant_id = 't1';
		INSERT INTO items VALUES (1, 'a "quoted" name'); UPDATE items SET name = NULL;
		SELECT audit.log_event('LOGIN', 'user', 'alice', 'SUCCESS', '{"k": [1, "two"]}')`)
	testdb.Seal(t, db)
	var want []pgtrail.Event
	if err := chain.Read(ctx, db, 1, 1<<62, func(e *pgtrail.Event) error { want = append(want, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(want) < 3 {
		t.Fatalf("%d entries, want at least 3", len(want))
	}
	var exprs []string
	for _, c := range pgtrail.Columns {
		exprs = append(exprs, "CASE WHEN "+c.Name+" IS NULL THEN NULL ELSE format('%s', "+c.Name+") END")
	}
	rows, err := db.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM audit.events ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		texts := make([]*string, len(pgtrail.Columns))
		dst := make([]any, len(texts))
		for k := range texts {
			dst[k] = &texts[k]
		}
		if err := rows.Scan(dst...); err != nil {
			t.Fatal(err)
		}
		var e pgtrail.Event
		for k, c := range pgtrail.Columns {
			var b []byte
			if texts[k] != nil {
				b = []byte(*texts[k])
			}
			if known, err := e.SetText(c.Name, b, texts[k] == nil); err != nil || !known {
				t.Fatalf("SetText(%s, %q): known %v, %v", c.Name, b, known, err)
			}
		}
		if !reflect.DeepEqual(e, want[i]) {
			t.Errorf("seq %d from text forms:\n%+v\nchain.Read:\n%+v", want[i].Seq, e, want[i])
		}
	}
	if i != len(want) {
		t.Errorf("%d rows, want %d", i, len(want))
	}
	if known, _ := new(pgtrail.Event).SetText("a_later_column", []byte("x"), false); known {
		t.Error("a column pgtrail does not read was taken as known")
	}
}
