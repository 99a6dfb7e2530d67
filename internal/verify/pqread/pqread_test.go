package pqread

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
)

// TestParquetDecoder_MatchesDecodeParquet checks that the fast decoder reads every field as
// archive.DecodeParquet does, so that both give the same canonical bytes and hashes.
func TestParquetDecoder_MatchesDecodeParquet(t *testing.T) {
	cases := map[string][]pgtrail.Event{
		"Synthetic": verifytest.Events(5000, 500),
		"OddValues": verifytest.OddEvents(),
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
			var d Decoder
			var got [][]byte
			var hashes [][]byte
			err = d.Decode(data, func(rows []Row) error {
				for i := range rows {
					got = append(got, pgtrail.AppendCanonical(nil, &rows[i].Event))
					prevHash, entryHash := rows[i].Event.PrevHash, rows[i].Event.EntryHash
					if rows[i].PrevHex != nil {
						prevHash = make([]byte, sha256.Size)
						hex.Decode(prevHash, rows[i].PrevHex)
					}
					if rows[i].EntryHex != nil {
						entryHash = make([]byte, sha256.Size)
						hex.Decode(entryHash, rows[i].EntryHex)
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
	var d Decoder
	for b.Loop() {
		d.Decode(data, func(rows []Row) error { return nil })
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "entries/s")
}
