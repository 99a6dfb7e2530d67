package archive_test

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// oddEvents are events whose fields stress the encoding: every nullable field NULL, empty and
// odd changed_columns, unicode, JSON with odd spacing and escapes, extreme numbers and times.
func oddEvents(t *testing.T) []pgtrail.Event {
	t.Helper()
	events := []pgtrail.Event{
		{Seq: 1, EventID: "00000000-0000-4000-8000-000000000001", OccurredAt: time.Unix(0, 0).UTC(),
			TxID: 0, ActionType: "LOGIN", ResourceType: "session", Outcome: "SUCCESS", ActorID: "alice",
			DBUser: "app"},
		{Seq: 2, EventID: "00000000-0000-4000-8000-000000000002", OccurredAt: time.Date(2024, 2, 29, 23, 59, 59, 999_999_000, time.FixedZone("X", 5*3600)),
			TxID: 1<<64 - 1, ActionType: "UPDATE", ResourceType: "public.\"Odd Table\"", ResourceID: ptr("(1,'x')"),
			Outcome: "FAILURE", ActorID: "Zoë ☃ 名前", ActorIP: ptr("2001:db8::1/64"), ActorIPRaw: ptr("not an ip"),
			ActorUserAgent: ptr("Mozilla/5.0 \"quoted\" \\ back"), RequestID: ptr(""), TenantID: ptr("tenant\x00zero"),
			DBUser: "app", ApplicationName: ptr("psql"), ClientAddr: ptr("127.0.0.1"),
			ChangedColumns: []string{"", "NULL", "a,b", `q"uote`, "sp ace", "ü"},
			BeforeState:    ptr(`{"a":   1 , "b" :[ 1,2 ],"s":"\u00e9\n\"x\""}`),
			AfterState:     ptr(`{}`), Details: ptr(`  [null, true,  1e10]  `)},
		{Seq: 3, EventID: "00000000-0000-4000-8000-000000000003", OccurredAt: time.Date(1999, 12, 31, 12, 0, 0, 1000, time.UTC),
			TxID: 1 << 63, ActionType: "DELETE", ResourceType: "t", Outcome: "UNAUTHORIZED", ActorID: "",
			DBUser: "", ChangedColumns: []string{}, BeforeState: ptr(`{"big": 123456789012345678901234567890}`)},
		{Seq: 4, EventID: "00000000-0000-4000-8000-000000000004", OccurredAt: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC),
			TxID: 42, ActionType: "DDL", ResourceType: "table", Outcome: "SUCCESS", ActorID: "x", DBUser: "owner",
			ChangedColumns: nil, Details: ptr(strings.Repeat(`{"k":"v"},`, 10000))},
	}
	prev := pgtrail.GenesisHash
	for i := range events {
		events[i].PrevHash = prev
		events[i].EntryHash = rehash(&events[i])
		prev = events[i].EntryHash
	}
	return events
}

func TestEncodeParquet_RoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		events func(t *testing.T) []pgtrail.Event
	}{
		{"OddValues", oddEvents},
		{"Chain", func(t *testing.T) []pgtrail.Event { return chain(t, 1, 500, nil) }},
		{"OneEvent", func(t *testing.T) []pgtrail.Event { return chain(t, 7, 1, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := tt.events(t)
			data, err := archive.EncodeParquet(events)
			if err != nil {
				t.Fatal(err)
			}
			got, err := archive.DecodeParquet(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(events) {
				t.Fatalf("decoded %d events, want %d", len(got), len(events))
			}
			for i := range events {
				want, have := events[i], got[i]
				// The chain must verify from the decoded values alone.
				if h := rehash(&have); !bytes.Equal(h, want.EntryHash) || !bytes.Equal(have.EntryHash, want.EntryHash) {
					t.Errorf("seq %d: recomputed entry hash %x, stored %x, want %x", want.Seq, h, have.EntryHash, want.EntryHash)
				}
				canonWant := pgtrail.AppendCanonical(nil, &want)
				canonHave := pgtrail.AppendCanonical(nil, &have)
				if !bytes.Equal(canonWant, canonHave) {
					t.Errorf("seq %d: canonical encoding differs after round trip:\n got %q\nwant %q", want.Seq, canonHave, canonWant)
				}
				if !have.OccurredAt.Equal(want.OccurredAt) || have.OccurredAt.Location() != time.UTC {
					t.Errorf("seq %d: occurred_at %v, want %v in UTC", want.Seq, have.OccurredAt, want.OccurredAt)
				}
				if have.ChangedColumns == nil || !slices.Equal(have.ChangedColumns, want.ChangedColumns) {
					t.Errorf("seq %d: changed_columns %#v, want %#v (never nil)", want.Seq, have.ChangedColumns, want.ChangedColumns)
				}
				// Everything but the time zone and nil-vs-empty changed_columns is identical.
				have.OccurredAt, want.OccurredAt = time.Time{}, time.Time{}
				have.ChangedColumns, want.ChangedColumns = nil, nil
				if !reflect.DeepEqual(have, want) {
					t.Errorf("seq %d: decoded\n%+v\nwant\n%+v", want.Seq, have, want)
				}
			}
		})
	}
}

func TestEncodeParquet_Deterministic(t *testing.T) {
	// A retry after a crash must produce byte-identical objects.
	events := chain(t, 1, 300, nil)
	a, err := archive.EncodeParquet(events)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, err := archive.EncodeParquet(slices.Clone(events))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("two encodings of the same events differ: sha256 %x vs %x", sha256.Sum256(a), sha256.Sum256(b))
		}
	}
	if !bytes.HasPrefix(a, []byte("PAR1")) || !bytes.HasSuffix(a, []byte("PAR1")) {
		t.Errorf("output is not a Parquet file")
	}
}

func TestEncodeParquet_Errors(t *testing.T) {
	good := chain(t, 1, 2, nil)
	tests := []struct {
		name   string
		mutate func(e *pgtrail.Event)
	}{
		{"NoEntryHash", func(e *pgtrail.Event) { e.EntryHash = nil }},
		{"ShortPrevHash", func(e *pgtrail.Event) { e.PrevHash = e.PrevHash[:31] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := slices.Clone(good)
			tt.mutate(&events[1])
			if _, err := archive.EncodeParquet(events); err == nil || !strings.Contains(err.Error(), "seq 2") {
				t.Errorf("EncodeParquet = %v, want an error naming seq 2", err)
			}
		})
	}
}

func TestDecodeParquet_Errors(t *testing.T) {
	data, err := archive.EncodeParquet(chain(t, 1, 3, nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"Empty":      nil,
		"NotParquet": []byte(`{"version":1}`),
		"Truncated":  data[:len(data)/2],
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := archive.DecodeParquet(in); err == nil {
				t.Errorf("DecodeParquet(%d bytes) = nil error", len(in))
			}
		})
	}
}

func TestColumns(t *testing.T) {
	// Athena reads columns by these names and types: they are the table definition.
	want := []archive.Column{
		{"seq", "bigint"}, {"event_id", "string"}, {"occurred_at", "timestamp"}, {"txid", "bigint"},
		{"action_type", "string"}, {"resource_type", "string"}, {"resource_id", "string"},
		{"outcome", "string"}, {"actor_id", "string"}, {"actor_ip", "string"}, {"actor_ip_raw", "string"},
		{"actor_user_agent", "string"}, {"request_id", "string"}, {"tenant_id", "string"},
		{"db_user", "string"}, {"application_name", "string"}, {"client_addr", "string"},
		{"changed_columns", "array<string>"}, {"before_state", "string"}, {"after_state", "string"},
		{"details", "string"}, {"prev_hash", "string"}, {"entry_hash", "string"},
	}
	if got := archive.Columns(); !slices.Equal(got, want) {
		t.Errorf("Columns() =\n%v\nwant\n%v", got, want)
	}
}
