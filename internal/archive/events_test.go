package archive_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive/file"
)

func ptr(s string) *string { return &s }

// chain builds n sealed events from seq first on, linked to prev (GenesisHash when nil), with
// hashes computed as the sealer does. Tenants and days vary so that a batch spans several files.
func chain(t testing.TB, first int64, n int, prev []byte) []pgtrail.Event {
	t.Helper()
	if prev == nil {
		prev = pgtrail.GenesisHash
	}
	tenants := []*string{ptr("acme"), nil, ptr("globex"), ptr("_none"), ptr("a/b c"), ptr("")}
	base := time.Date(2024, 2, 28, 23, 59, 59, 999_999_000, time.UTC)
	events := make([]pgtrail.Event, n)
	var buf []byte
	for i := range events {
		seq := first + int64(i)
		e := pgtrail.Event{
			Seq:            seq,
			EventID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", seq),
			OccurredAt:     base.Add(time.Duration(seq%5) * 7 * time.Hour),
			TxID:           uint64(1000 + seq/3),
			ActionType:     []string{"CREATE", "UPDATE", "DELETE", "LOGIN", "DDL"}[seq%5],
			ResourceType:   "public.accounts",
			ResourceID:     ptr(fmt.Sprint(seq)),
			Outcome:        "SUCCESS",
			ActorID:        fmt.Sprintf("user-%d", seq%3),
			ActorIP:        ptr("10.0.0.1"),
			TenantID:       tenants[seq%int64(len(tenants))],
			DBUser:         "app",
			ChangedColumns: []string{"balance"},
			AfterState:     ptr(fmt.Sprintf(`{"id": %d, "balance": 10.50}`, seq)),
			PrevHash:       prev,
		}
		sum, b := e.Hash(buf)
		buf = b
		e.EntryHash = sum[:]
		prev = e.EntryHash
		events[i] = e
	}
	return events
}

// fileSink returns an empty file sink in a temporary directory.
func fileSink(t *testing.T) *file.Sink {
	t.Helper()
	s, err := file.New(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rehash recomputes the entry hash of e from its fields and PrevHash.
func rehash(e *pgtrail.Event) []byte {
	sum, _ := e.Hash(nil)
	return sum[:]
}
