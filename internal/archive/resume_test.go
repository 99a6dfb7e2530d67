package archive_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func TestWriter_Resume(t *testing.T) {
	ctx := context.Background()
	t.Run("EmptyArchive", func(t *testing.T) {
		st, err := (&archive.Writer{Sink: fileSink(t)}).Resume(ctx)
		if err != nil || st.LastSeq != 0 || st.LastEntryHash != nil || st.LastDigestKey != "" || st.PartialBatchLast != 0 {
			t.Errorf("Resume = %+v, %v; want the zero state", st, err)
		}
	})
	t.Run("ArchiveStartingMidChain", func(t *testing.T) {
		// An archive may start after seq 1 (enabled on an existing trail); it continues from there.
		sink := fileSink(t)
		events := chain(t, 500, 10, nil)
		if err := (&archive.Writer{Sink: sink}).WriteBatch(ctx, events); err != nil {
			t.Fatal(err)
		}
		st, err := (&archive.Writer{Sink: sink}).Resume(ctx)
		if err != nil || st.LastSeq != 509 {
			t.Errorf("Resume = %+v, %v; want LastSeq 509", st, err)
		}
	})

	// Tried: archives that a single writer cannot have produced. Must survive: Resume refuses
	// with an error naming the problem rather than continuing a broken chain.
	tests := []struct {
		name    string
		damage  func(t *testing.T, s archive.Sink)
		wantErr string
	}{
		{"GapBetweenBatches", func(t *testing.T, s archive.Sink) {
			put(t, s, "events/tenant=a/dt=2024-01-01/00000000000000000050-00000000000000000060.parquet", "x")
			put(t, s, "digests/00000000000000000050-00000000000000000060/0.json", "{}")
		}, "does not follow batch 1-20"},
		{"IncompleteBatchBeforeComplete", func(t *testing.T, s archive.Sink) {
			put(t, s, "events/tenant=zz/dt=2024-01-01/00000000000000000001-00000000000000000020.parquet", "x")
			writeMore(t, s)
		}, "batch 1-20 is incomplete"},
		{"StrayObject", func(t *testing.T, s archive.Sink) {
			put(t, s, "events/tenant=a/notes.txt", "x")
		}, "unexpected object events/tenant=a/notes.txt"},
		{"StrayDigest", func(t *testing.T, s archive.Sink) {
			put(t, s, "digests/latest.json", "x")
		}, "unexpected object digests/latest.json"},
		{"CorruptDigest", func(t *testing.T, s archive.Sink) {
			put(t, s, "events/tenant=a/dt=2024-01-01/00000000000000000021-00000000000000000030.parquet", "x")
			put(t, s, "digests/00000000000000000021-00000000000000000030/0.json", `{"version":1,"rows":"x"}`)
		}, "parse digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := fileSink(t)
			if err := (&archive.Writer{Sink: sink}).WriteBatch(ctx, chain(t, 1, 20, nil)); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, sink)
			st, err := (&archive.Writer{Sink: sink}).Resume(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resume = %+v, %v; want an error containing %q", st, err, tt.wantErr)
			}
		})
	}
}

func put(t *testing.T, s archive.Sink, key, data string) {
	t.Helper()
	if err := s.Put(context.Background(), key, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// writeMore appends a complete batch 21-30 by hand, as a second, rogue writer would.
func writeMore(t *testing.T, s archive.Sink) {
	t.Helper()
	events := chain(t, 1, 30, nil)
	data, err := archive.EncodeParquet(events[20:])
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, archive.DataKey(nil, events[20].OccurredAt, 21, 30), string(data))
	put(t, s, archive.DigestKey(21, 30, 0), "{}")
}
