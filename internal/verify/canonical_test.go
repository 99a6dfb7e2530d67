package verify

import (
	"bytes"
	"crypto/sha256"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
)

// TestCanonicalEncoder_MatchesAppendCanonical checks that the encoder verification runs over a
// trail (pgtrail.CanonicalEncoder, with its caches) writes the bytes pgtrail.AppendCanonical
// writes (and so the hashes the chain was built with), for odd
// values, extreme numbers, random fields, and changed_columns lists that repeat, change, and
// share prefixes, in one encoder whose cache must not leak one entry's list into the next.
func TestCanonicalEncoder_MatchesAppendCanonical(t *testing.T) {
	events := append(verifytest.OddEvents(), verifytest.Events(200, 400)...)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"", "a", "b", "NULL", "null", `"`, `\`, "{", "}", ",", " ", "\t", "é", "x y", "0123456789"}
	text := func() string {
		var b []byte
		for range rng.IntN(6) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		return string(b)
	}
	opt := func() *string {
		if rng.IntN(3) == 0 {
			return nil
		}
		s := text()
		return &s
	}
	lists := [][]string{nil, {}, {"a"}, {"a", "b"}, {"ab"}, {"a", ""}, {"", "a"}, {"a", "b", "c"}, {"NULL"}, {`a"b`}}
	numbers := []int64{0, 1, 9, 10, 99, 100, 999, 1000, 12345678901234, math.MaxInt64, -1, -10, math.MinInt64}
	for i := range 3000 {
		e := pgtrail.Event{
			Seq: numbers[rng.IntN(len(numbers))], EventID: text(), TxID: uint64(numbers[rng.IntN(len(numbers))]),
			OccurredAt: time.UnixMicro(numbers[rng.IntN(len(numbers))] / 1e6).Add(time.Duration(rng.Int64N(1e6)) * time.Microsecond),
			ActionType: text(), ResourceType: text(), ResourceID: opt(), Outcome: text(), ActorID: text(),
			ActorIP: opt(), ActorIPRaw: opt(), ActorUserAgent: opt(), RequestID: opt(), TenantID: opt(),
			DBUser: text(), ApplicationName: opt(), ClientAddr: opt(), BeforeState: opt(), AfterState: opt(),
			Details: opt(), PrevHash: bytes.Repeat([]byte{byte(i)}, sha256.Size),
		}
		if i%2 == 0 {
			e.ChangedColumns = lists[rng.IntN(len(lists))]
		} else {
			for range rng.IntN(70) {
				e.ChangedColumns = append(e.ChangedColumns, text())
			}
		}
		events = append(events, e)
	}
	// Runs of consecutive and repeated numbers, across every carry into another digit and
	// across zero, as the encoder's number caches see them in a file.
	for _, start := range []int64{-12, -1, 0, 7, 97, 995, 9_999_990, math.MaxInt64 - 3} {
		for k := range int64(14) {
			e := events[k%4]
			e.Seq, e.TxID = start+k, uint64(start+k/3)
			e.OccurredAt = time.UnixMicro(start + k/2)
			if start+k < start { // past MaxInt64
				break
			}
			events = append(events, e)
		}
	}
	var enc pgtrail.CanonicalEncoder
	var got []byte
	for i := range events {
		// Encode into reused memory, as the decoder's aliased strings are.
		cols := make([]string, len(events[i].ChangedColumns))
		copy(cols, events[i].ChangedColumns)
		events[i].ChangedColumns = cols
		got = enc.Append(got[:0], &events[i])
		if want := pgtrail.AppendCanonical(nil, &events[i]); !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

func BenchmarkCanonicalEncoder(b *testing.B) {
	events := verifytest.Events(10000, 500)
	b.Run("Verify", func(b *testing.B) {
		var enc pgtrail.CanonicalEncoder
		var buf []byte
		for b.Loop() {
			for i := range events {
				buf = enc.Append(buf[:0], &events[i])
			}
		}
		b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("AppendCanonical", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			for i := range events {
				buf = pgtrail.AppendCanonical(buf[:0], &events[i])
			}
		}
		b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "entries/s")
	})
}
