package cdc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// TestJSONImages_SameAsRowImages holds the images built in Go to audit.row_images, byte for
// byte: the same table, the same column texts (as the walsender writes them: ISO dates, UTC),
// every kind of change (insert, delete, update, an update whose old image holds only the key,
// a change without context), excluded columns, a two-column key, and values chosen to tell a
// careless rewriting apart (escapes, control characters, numbers that compare equal with
// different texts, NaN, infinities, years past 9999, NULLs). And tables or values the Go path
// does not build must go to the query.
func TestJSONImages_SameAsRowImages(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE kinds (
		  k_int int, k_text text, c_bool bool, c_int2 int2, c_int8 int8, c_num numeric, c_num2 numeric(12,2),
		  c_varchar varchar(20), c_bpchar char(5), c_name name, c_uuid uuid, c_date date, c_ts timestamp(3), c_tstz timestamptz,
		  "Mixed Case ""q""" text, PRIMARY KEY (k_int, k_text));
		INSERT INTO kinds VALUES
		  (1, 'a', true, -32768, -9223372036854775808, 0, 1.50, 'x', 'ab', 'nm', '00000000-0000-0000-0000-000000000001',
		   '2026-12-07', '2026-12-07 19:00:00', '2026-12-07 19:00:00.5+00', 'plain'),
		  (1, 'b', false, 32767, 9223372036854775807, 1.5, 1.5, 'x', 'ab', 'nm', '00000000-0000-0000-0000-000000000001',
		   '2026-12-07', '2026-12-07 19:00:00.123', '2026-12-07 19:00:00.500001+05:30', 'plain'),
		  (2, E'q"b\\s/\t\n\r\b\f\x01\x1f\x7f ünï 😀', NULL, 0, 0, 'NaN', -0.00, '', 'abcde', '', '00000000-0000-0000-0000-0000000000ff',
		   'infinity', 'infinity', '-infinity', 'null'),
		  (3, '', NULL, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, '12345-01-01', '12345-01-01 00:00:00', '10000-01-01 00:00:00+00', NULL),
		  (4, 'x', true, 1, 1, '-Infinity', 123456789.12, 'z', 'z', 'z', '00000000-0000-0000-0000-000000000002',
		   '-infinity', '-infinity', 'infinity', E'\\\\'),
		  (5, 'y', true, 1, 1, '123456789012345678901234567890.000100', -1, 'z', 'z', 'z', '00000000-0000-0000-0000-000000000002',
		   '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', ''),
		  (6, 'b', false, 32767, 9223372036854775807, 1.50, 1.5, 'x', 'ab', 'nm', '00000000-0000-0000-0000-000000000001',
		   '2026-12-07', '2026-12-07 19:00:00.123', '2026-12-07 19:00:00.500001+05:30', 'plain');
		CREATE TABLE floats (id int PRIMARY KEY, f float8); INSERT INTO floats VALUES (1, 1.5)`)

	// The column texts as the walsender gives them (its session: ISO dates, UTC).
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["TimeZone"], cfg.RuntimeParams["DateStyle"] = "UTC", "ISO, YMD"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := func(name string, exclude []string) *walTable {
		t.Helper()
		tb := &walTable{name: "public." + name, exclude: exclude}
		rows, err := conn.Query(ctx, `SELECT attname, atttypid, atttypmod FROM pg_attribute
		                               WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, name)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			var oid uint32
			var mod int32
			if err := rows.Scan(&n, &oid, &mod); err != nil {
				t.Fatal(err)
			}
			tb.names, tb.types, tb.typmods = append(tb.names, n), append(tb.types, oid), append(tb.typmods, mod)
		}
		tb.rel = &pglogrepl.RelationMessage{Namespace: "public", RelationName: name}
		for i, n := range tb.names {
			tb.rel.Columns = append(tb.rel.Columns, &pglogrepl.RelationMessageColumn{Name: n, DataType: tb.types[i], TypeModifier: tb.typmods[i]})
		}
		if err := conn.QueryRow(ctx, `SELECT array_agg(a.attname ORDER BY k.o) FROM pg_index i
		                               CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(n, o)
		                               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
		                              WHERE i.indrelid = $1::regclass AND i.indisprimary`, name).Scan(&tb.pk); err != nil {
			t.Fatal(err)
		}
		return tb
	}
	// Each column's text as its type's output function writes it (format %s calls it; a cast
	// to text would not for every type: true::text is "true", the output "t").
	columnTexts := func(tb *walTable, name string) [][]*string {
		t.Helper()
		list := ""
		for i, n := range tb.names {
			if i > 0 {
				list += ", "
			}
			q := pgx.Identifier{n}.Sanitize()
			list += fmt.Sprintf("CASE WHEN %s IS NOT NULL THEN format('%%s', %s) END", q, q)
		}
		var texts [][]*string
		rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT ARRAY[%s] FROM %s ORDER BY ctid`, list, name))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r []*string
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return texts
	}

	s := &Stream{cfg: Config{ConnConfig: cfg}, pool: db, log: slog.New(slog.DiscardHandler)}
	withContext := &sessionContext{}
	changesOf := func(tb *walTable, rows [][]*string) []*change {
		var cs []*change
		for i, r := range rows {
			cs = append(cs, &change{table: tb, action: "CREATE", new: r, ctx: withContext})
			cs = append(cs, &change{table: tb, action: "DELETE", old: r})
			for _, next := range rows {
				cs = append(cs, &change{table: tb, action: "UPDATE", old: r, new: next, ctx: withContext})
			}
			if i+1 < len(rows) {
				key := make([]*string, len(r)) // the old image keyOnly gives: the key columns
				for j, n := range tb.names {
					if slices.Contains(tb.pk, n) {
						key[j] = rows[i+1][j]
					}
				}
				cs = append(cs, &change{table: tb, action: "UPDATE", old: key, new: rows[i+1], oldKey: true})
			}
		}
		return cs
	}

	for _, c := range []struct {
		name    string
		exclude []string
	}{
		{"kinds", []string{}},
		{"kinds", []string{"c_num", "c_tstz", "not_a_column"}},
		{"kinds", []string{"k_text"}}, // a key column excluded: still in resource_id
	} {
		t.Run(fmt.Sprint(c.exclude), func(t *testing.T) {
			tb := table(c.name, c.exclude)
			rows := columnTexts(tb, c.name)
			changes := changesOf(tb, rows)
			got, want := make([]pgtrail.Event, len(changes)), make([]pgtrail.Event, len(changes))
			gotp, wantp := make([]*pgtrail.Event, len(changes)), make([]*pgtrail.Event, len(changes))
			for i := range changes {
				gotp[i], wantp[i] = &got[i], &want[i]
			}
			if !jsonImages(tb, changes, gotp) {
				t.Fatal("jsonImages did not build the images of a table of built-in types")
			}
			m := &imager{s: s}
			defer m.close()
			if err := s.typedImages(ctx, m, tb, changes, wantp, "", time.Minute); err != nil {
				t.Fatal(err)
			}
			for i := range changes {
				g, w := got[i], want[i]
				if str(g.BeforeState) != str(w.BeforeState) || str(g.AfterState) != str(w.AfterState) ||
					!slices.Equal(g.ChangedColumns, w.ChangedColumns) || str(g.ResourceID) != str(w.ResourceID) || str(g.Details) != str(w.Details) {
					t.Errorf("%s #%d:\ngo:  before %s\n     after  %s\n     changed %q id %s details %s\nsql: before %s\n     after  %s\n     changed %q id %s details %s",
						changes[i].action, i, str(g.BeforeState), str(g.AfterState), g.ChangedColumns, str(g.ResourceID), str(g.Details),
						str(w.BeforeState), str(w.AfterState), w.ChangedColumns, str(w.ResourceID), str(w.Details))
				}
			}
		})
	}

	// Not built in Go: a type it does not write (float8), a value it does not (a date BC, an
	// offset that is not UTC). The events are left as they were.
	floats, kinds := table("floats", []string{}), table("kinds", []string{})
	bc := columnTexts(kinds, "kinds")[0]
	date, offset := "2026-12-07 BC", "2026-12-07 19:00:00+01"
	for _, c := range []struct {
		name string
		tb   *walTable
		row  []*string
	}{
		{"float8", floats, columnTexts(floats, "floats")[0]},
		{"date BC", kinds, replaceAt(bc, slices.Index(kinds.names, "c_date"), &date)},
		{"offset +01", kinds, replaceAt(bc, slices.Index(kinds.names, "c_tstz"), &offset)},
	} {
		e := pgtrail.Event{ChangedColumns: []string{"untouched"}}
		if jsonImages(c.tb, []*change{{table: c.tb, action: "CREATE", new: c.row}}, []*pgtrail.Event{&e}) {
			t.Errorf("%s: built in Go, want left to audit.row_images", c.name)
		}
		if e.AfterState != nil || !slices.Equal(e.ChangedColumns, []string{"untouched"}) {
			t.Errorf("%s: the event was changed though the images were not built", c.name)
		}
	}
}

func str(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func replaceAt(row []*string, i int, v *string) []*string {
	row = slices.Clone(row)
	row[i] = v
	return row
}
