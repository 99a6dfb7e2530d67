package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
)

// oddEvents returns events with the values the encoding finds awkward: NULLs everywhere they
// may be, empty strings, empty and quoted changed_columns, multi-byte text.
func oddEvents() []pgtrail.Event {
	s := func(v string) *string { return &v }
	h := bytes.Repeat([]byte{7}, sha256.Size)
	base := pgtrail.Event{EventID: "00000000-0000-4000-8000-000000000001", OccurredAt: time.UnixMicro(1700000000123456),
		TxID: 1 << 62, ActionType: "UPDATE", ResourceType: `"odd ""table"""`, Outcome: "SUCCESS", ActorID: "",
		DBUser: "päß", PrevHash: h, EntryHash: h}
	evs := []pgtrail.Event{base, base, base, base}
	evs[1].ResourceID, evs[1].ActorIP, evs[1].ActorIPRaw, evs[1].ActorUserAgent = s(""), s("::1"), s("not an ip"), s("tab\there")
	evs[1].RequestID, evs[1].TenantID, evs[1].ApplicationName, evs[1].ClientAddr = s("r"), s(""), s("a"), s("10.0.0.0/8")
	evs[1].ChangedColumns = []string{"a,b", "NULL", "", `"q"`, `back\slash`, "{x}", " "}
	evs[1].BeforeState, evs[1].AfterState, evs[1].Details = s(`{"a": 1}`), s(`{}`), s(`{"é": "\"x\""}`)
	evs[2].ChangedColumns = []string{"one"}
	evs[2].TenantID = s("_under")
	evs[3].Details = s("")
	for i := range evs {
		evs[i].Seq = int64(i + 1)
	}
	return evs
}

// TestParquetDecoder_MatchesDecodeParquet checks that the fast decoder reads every field as
// archive.DecodeParquet does, so that both give the same canonical bytes and hashes.
func TestParquetDecoder_MatchesDecodeParquet(t *testing.T) {
	cases := map[string][]pgtrail.Event{
		"Synthetic": verifytest.Events(5000, 500),
		"OddValues": oddEvents(),
	}
	for name, evs := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := archive.EncodeParquet(evs)
			if err != nil {
				t.Fatal(err)
			}
			want, err := archive.DecodeParquet(data)
			if err != nil {
				t.Fatal(err)
			}
			var d parquetDecoder
			var got [][]byte
			var hashes [][]byte
			err = d.decode(data, func(rows []pqRow) error {
				for i := range rows {
					got = append(got, pgtrail.AppendCanonical(nil, &rows[i].ev))
					prevHash, entryHash := rows[i].ev.PrevHash, rows[i].ev.EntryHash
					if rows[i].prevHex != nil {
						prevHash = make([]byte, sha256.Size)
						hex.Decode(prevHash, rows[i].prevHex)
					}
					if rows[i].entryHex != nil {
						entryHash = make([]byte, sha256.Size)
						hex.Decode(entryHash, rows[i].entryHex)
					}
					hashes = append(hashes, append(append([]byte(nil), prevHash...), entryHash...))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("decoded %d rows, want %d", len(got), len(want))
			}
			for i := range want {
				if w := pgtrail.AppendCanonical(nil, &want[i]); !bytes.Equal(got[i], w) {
					t.Fatalf("row %d:\n got %q\nwant %q", i, got[i], w)
				}
				if w := append(append([]byte(nil), want[i].PrevHash...), want[i].EntryHash...); !bytes.Equal(hashes[i], w) {
					t.Fatalf("row %d: hashes differ", i)
				}
			}
		})
	}
}

func BenchmarkParquetDecoder(b *testing.B) {
	evs := verifytest.Events(10000, 500)
	data, _ := archive.EncodeParquet(evs)
	var d parquetDecoder
	for b.Loop() {
		d.decode(data, func(rows []pqRow) error { return nil })
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "entries/s")
}
