package archive_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archivetest"
)

func sign(priv ed25519.PrivateKey, d archive.Digest) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, d.SigningBytes()))
}

// batches splits events into batches of the given sizes.
func batches(events []pgtrail.Event, sizes ...int) [][]pgtrail.Event {
	var out [][]pgtrail.Event
	for _, n := range sizes {
		out = append(out, events[:n])
		events = events[n:]
	}
	return out
}

// checkArchive verifies everything a verifier would: every digest signed (when pub is set) and
// chained to the one before, describing its file exactly, and the files holding exactly want, in
// a valid hash chain.
func checkArchive(t *testing.T, sink archive.Sink, pub ed25519.PublicKey, want []pgtrail.Event) []archive.Digest {
	t.Helper()
	ctx := context.Background()
	digests, err := archive.ReadDigests(ctx, sink)
	if err != nil {
		t.Fatalf("ReadDigests: %v", err)
	}
	dataKeys, err := sink.List(ctx, archive.EventsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(digests) != len(dataKeys) {
		t.Errorf("%d digests for %d data files", len(digests), len(dataKeys))
	}
	var got []pgtrail.Event
	for i, d := range digests {
		if pub != nil {
			if err := archive.VerifyDigest(d, pub); err != nil {
				t.Errorf("digest %d: %v", i, err)
			}
		}
		var prevKey, prevSig string
		if i > 0 {
			prevKey, prevSig = digests[i-1].Key, digests[i-1].Signature
		}
		if d.PrevDigestKey != prevKey || d.PrevDigestSignature != prevSig {
			t.Errorf("digest %s links to %q/%q, want %q/%q", d.Key, d.PrevDigestKey, d.PrevDigestSignature, prevKey, prevSig)
		}
		data, err := sink.Get(ctx, d.FileKey)
		if err != nil {
			t.Fatalf("digest %s names %s: %v", d.Key, d.FileKey, err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.FileSHA256 {
			t.Errorf("digest %s: file_sha256 does not match %s", d.Key, d.FileKey)
		}
		events, err := archive.DecodeParquet(data)
		if err != nil {
			t.Fatal(err)
		}
		first, last := events[0], events[len(events)-1]
		if d.Rows != int64(len(events)) || d.FirstSeq != first.Seq || d.LastSeq != last.Seq ||
			d.FirstEntryHash != hex.EncodeToString(first.EntryHash) || d.LastEntryHash != hex.EncodeToString(last.EntryHash) {
			t.Errorf("digest %s = %+v does not describe its file (%d rows, seq %d..%d)", d.Key, d, len(events), first.Seq, last.Seq)
		}
		for _, e := range events {
			if e.Seq < d.BatchFirstSeq || e.Seq > d.BatchLastSeq {
				t.Errorf("%s holds seq %d outside its batch %d-%d", d.FileKey, e.Seq, d.BatchFirstSeq, d.BatchLastSeq)
			}
			if want := archive.DataKey(e.TenantID, e.OccurredAt, d.BatchFirstSeq, d.BatchLastSeq); want != d.FileKey {
				t.Errorf("seq %d is in %s, want %s", e.Seq, d.FileKey, want)
			}
		}
		got = append(got, events...)
	}
	slices.SortFunc(got, func(a, b pgtrail.Event) int { return int(a.Seq - b.Seq) })
	if len(got) != len(want) {
		t.Fatalf("archive holds %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(rehash(&got[i]), want[i].EntryHash) {
			t.Errorf("archived seq %d does not reproduce entry hash of seq %d", got[i].Seq, want[i].Seq)
		}
		if i > 0 && !bytes.Equal(got[i].PrevHash, got[i-1].EntryHash) {
			t.Errorf("archived seq %d does not link to seq %d", got[i].Seq, got[i-1].Seq)
		}
	}
	return digests
}

func TestWriter_WriteBatch(t *testing.T) {
	ctx := context.Background()
	pub, priv := archive.GenerateKey()
	sink := fileSink(t)
	events := chain(t, 1, 100, nil)
	w := &archive.Writer{Sink: sink, Key: priv}
	for _, b := range batches(events, 1, 30, 69) {
		if err := w.WriteBatch(ctx, b); err != nil {
			t.Fatalf("WriteBatch %d-%d: %v", b[0].Seq, b[len(b)-1].Seq, err)
		}
	}
	if err := w.WriteBatch(ctx, nil); err != nil {
		t.Errorf("WriteBatch(nil) = %v, want a no-op", err)
	}
	digests := checkArchive(t, sink, pub, events)
	if len(digests) < 10 {
		t.Errorf("%d digests: the test events should span many tenants and days", len(digests))
	}
	// Batch 2..31 holds seq 2..31; its files are all named after the batch range.
	keys, _ := sink.List(ctx, "events/tenant=acme/")
	for _, k := range keys {
		if first, last, _ := archive.ParseDataKey(k); !(first == 1 && last == 1 || first == 2 && last == 31 || first == 32 && last == 100) {
			t.Errorf("data file %s is not named after a batch range", k)
		}
	}
	st, err := (&archive.Writer{Sink: sink}).Resume(ctx)
	last := digests[len(digests)-1]
	if err != nil || st.LastSeq != 100 || !bytes.Equal(st.LastEntryHash, events[99].EntryHash) ||
		st.LastDigestKey != last.Key || st.LastDigestSignature != last.Signature || st.PartialBatchLast != 0 {
		t.Errorf("Resume = %+v, %v; want the end of batch 32-100", st, err)
	}
}

func TestWriter_WriteBatchUnsigned(t *testing.T) {
	sink := fileSink(t)
	pub, _ := archive.GenerateKey()
	events := chain(t, 1, 20, nil)
	w := &archive.Writer{Sink: sink}
	for _, b := range batches(events, 10, 10) {
		if err := w.WriteBatch(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range checkArchive(t, sink, nil, events) {
		if d.Signature != "" || !errors.Is(archive.VerifyDigest(d, pub), archive.ErrUnsigned) {
			t.Errorf("digest %s: signature %q, want unsigned", d.Key, d.Signature)
		}
	}
}

func TestWriter_WriteBatchBadBatch(t *testing.T) {
	// Tried: batches that are out of order, have gaps or broken links, or do not continue the
	// archive. Must survive: ErrBadBatch, and nothing written by the bad batch.
	events := chain(t, 1, 20, nil)
	tampered := slices.Clone(events[10:20])
	tampered[0].PrevHash = bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name  string
		batch []pgtrail.Event
		want  string
	}{
		{"Unsorted", []pgtrail.Event{events[11], events[10], events[12]}, "sorted and contiguous"},
		{"Gap", []pgtrail.Event{events[10], events[12]}, "sorted and contiguous"},
		{"Duplicate", []pgtrail.Event{events[10], events[10]}, "sorted and contiguous"},
		{"BrokenLink", []pgtrail.Event{events[10], chain(t, 12, 1, nil)[0]}, "prev_hash is not the entry_hash of seq 11"},
		{"DoesNotContinue", events[11:15], "starts at seq 12 but the archive ends at seq 10"},
		{"Overlaps", events[5:15], "starts at seq 6 but the archive ends at seq 10"},
		{"ForeignPrevHash", tampered, "prev_hash is not the entry_hash of the archived seq 10"},
		{"NoHash", func() []pgtrail.Event { b := slices.Clone(events[10:12]); b[1].EntryHash = nil; return b }(), "not a SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sink := fileSink(t)
			w := &archive.Writer{Sink: sink}
			if err := w.WriteBatch(ctx, events[:10]); err != nil {
				t.Fatal(err)
			}
			before, _ := sink.List(ctx, "")
			err := w.WriteBatch(ctx, tt.batch)
			if !errors.Is(err, archive.ErrBadBatch) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteBatch = %v, want ErrBadBatch containing %q", err, tt.want)
			}
			if after, _ := sink.List(ctx, ""); !slices.Equal(before, after) {
				t.Errorf("the bad batch wrote %d objects", len(after)-len(before))
			}
			// The writer is still usable with the right batch.
			if err := w.WriteBatch(ctx, events[10:20]); err != nil {
				t.Errorf("WriteBatch of the right batch after a bad one: %v", err)
			}
		})
	}
}

// snapshot returns every object of sink.
func snapshot(t *testing.T, sink archive.Sink) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := sink.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	objects := map[string]string{}
	for _, k := range keys {
		data, err := sink.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		objects[k] = string(data)
	}
	return objects
}

func TestWriter_CrashMidBatch(t *testing.T) {
	// Tried: the process dies after some of the objects of batch 2 are written, and a new process
	// resumes. Must survive: Resume reports the interrupted batch, a batch with
	// another range is refused, retrying batch 2 completes it, and the archive ends up identical,
	// byte for byte, to one written without a crash.
	ctx := context.Background()
	_, priv := archive.GenerateKey()
	events := chain(t, 1, 60, nil)
	bs := batches(events, 20, 25, 15)

	reference := fileSink(t)
	rw := &archive.Writer{Sink: reference, Key: priv}
	for _, b := range bs {
		if err := rw.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshot(t, reference)
	objectsBatch1, objectsBatch2 := 0, 0
	for k := range want {
		switch {
		case strings.Contains(k, "00000000000000000001-00000000000000000020"):
			objectsBatch1++
		case strings.Contains(k, "00000000000000000021-00000000000000000045"):
			objectsBatch2++
		}
	}

	// Batch 2 writes its data files, then as many digests. Crash at each edge of those phases.
	files := objectsBatch2 / 2
	for _, crashAfter := range []int{0, 1, files / 2, files - 1, files, files + 1, objectsBatch2 - 1} {
		t.Run(fmt.Sprintf("After%dObjects", crashAfter), func(t *testing.T) {
			t.Parallel()
			sink := fileSink(t)
			w := &archive.Writer{Sink: &archivetest.FlakySink{Sink: sink, N: objectsBatch1 + crashAfter}, Key: priv}
			if err := w.WriteBatch(ctx, bs[0]); err != nil {
				t.Fatal(err)
			}
			err := w.WriteBatch(ctx, bs[1])
			if err == nil || !archive.IsRetryable(err) {
				t.Fatalf("WriteBatch during the outage = %v, want a retryable error", err)
			}

			restarted := &archive.Writer{Sink: sink, Key: priv}
			st, err := restarted.Resume(ctx)
			wantPartial := int64(45)
			if crashAfter == 0 {
				wantPartial = 0
			}
			if err != nil || st.LastSeq != 20 || st.PartialBatchLast != wantPartial {
				t.Fatalf("Resume = %+v, %v; want LastSeq 20, PartialBatchLast %d", st, err, wantPartial)
			}
			if crashAfter > 0 {
				if err := restarted.WriteBatch(ctx, events[20:40]); !errors.Is(err, archive.ErrBadBatch) {
					t.Errorf("WriteBatch 21-40 over the interrupted 21-45 = %v, want ErrBadBatch", err)
				}
			}
			for _, b := range bs[1:] {
				if err := restarted.WriteBatch(ctx, b); err != nil {
					t.Fatalf("WriteBatch %d-%d after restart: %v", b[0].Seq, b[len(b)-1].Seq, err)
				}
			}
			got := snapshot(t, sink)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("object %s differs from the crash-free archive", k)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d objects, want %d", len(got), len(want))
			}
		})
	}
}

func TestWriter_RetryInProcess(t *testing.T) {
	// Tried: the same writer retries a batch after an outage, first with a different range.
	// Must survive: the other range is refused; the same batch completes the archive.
	ctx := context.Background()
	pub, priv := archive.GenerateKey()
	events := chain(t, 1, 30, nil)
	sink := fileSink(t)
	flaky := &archivetest.FlakySink{Sink: sink, N: 3}
	w := &archive.Writer{Sink: flaky, Key: priv}
	if err := w.WriteBatch(ctx, events); err == nil {
		t.Fatal("WriteBatch during the outage = nil")
	}
	flaky.Recover() // outage over
	if err := w.WriteBatch(ctx, events[:10]); !errors.Is(err, archive.ErrBadBatch) {
		t.Errorf("WriteBatch of another range after a failed batch = %v, want ErrBadBatch", err)
	}
	if err := w.WriteBatch(ctx, events); err != nil {
		t.Fatalf("retried WriteBatch: %v", err)
	}
	checkArchive(t, sink, pub, events)
}

func TestWriter_RetryWithNewKey(t *testing.T) {
	// Tried: a crash after some digests of a batch, and a restart with another signing key.
	// Must survive: the retry keeps the stored digests and chains the new ones to them.
	ctx := context.Background()
	pubA, privA := archive.GenerateKey()
	pubB, privB := archive.GenerateKey()
	events := chain(t, 1, 30, nil)
	probe := fileSink(t)
	if err := (&archive.Writer{Sink: probe}).WriteBatch(ctx, events); err != nil {
		t.Fatal(err)
	}
	files, _ := probe.List(ctx, archive.EventsPrefix)
	sink := fileSink(t)
	w := &archive.Writer{Sink: &archivetest.FlakySink{Sink: sink, N: len(files) + 2}, Key: privA}
	if err := w.WriteBatch(ctx, events); err == nil {
		t.Fatal("WriteBatch during the outage = nil")
	}
	if err := (&archive.Writer{Sink: sink, Key: privB}).WriteBatch(ctx, events); err != nil {
		t.Fatalf("retry with a new key: %v", err)
	}
	digests := checkArchive(t, sink, nil, events)
	for i, d := range digests {
		pub := pubB
		if i < 2 {
			pub = pubA
		}
		if err := archive.VerifyDigest(d, pub); err != nil {
			t.Errorf("digest %d: %v", i, err)
		}
	}
}

func TestWriter_RetryDetectsOtherContent(t *testing.T) {
	// Tried: retrying an interrupted batch with events that differ from those already archived
	// under the same range. Must survive: the archived objects, and an ErrBadBatch.
	ctx := context.Background()
	events := chain(t, 1, 30, nil)
	sink := fileSink(t)
	w := &archive.Writer{Sink: &archivetest.FlakySink{Sink: sink, N: 2}}
	if err := w.WriteBatch(ctx, events); err == nil {
		t.Fatal("WriteBatch during the outage = nil")
	}
	before := snapshot(t, sink)
	forged := slices.Clone(events)
	forged[0].ActorID = "mallory"
	prev := pgtrail.GenesisHash
	for i := range forged {
		forged[i].PrevHash = prev
		forged[i].EntryHash = rehash(&forged[i])
		prev = forged[i].EntryHash
	}
	err := (&archive.Writer{Sink: sink}).WriteBatch(ctx, forged)
	if !errors.Is(err, archive.ErrBadBatch) || !strings.Contains(err.Error(), "other events") {
		t.Errorf("WriteBatch with other events = %v, want ErrBadBatch", err)
	}
	after := snapshot(t, sink)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("archived %s changed", k)
		}
	}
}
