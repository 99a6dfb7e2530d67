package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/pgtrail/pgtrail"
)

// ErrBadBatch is wrapped by WriteBatch when the events themselves are wrong (out of order, a gap,
// a broken hash link, a range that does not continue the archive): a retry of the same batch
// cannot succeed.
var ErrBadBatch = errors.New("bad batch")

// ErrArchiveDiffers is wrapped (with ErrBadBatch) when a batch being completed after a crash is
// archived already with other events than the ones given: the archive, or the database the
// events come from, was changed by someone. A retry cannot fix that.
var ErrArchiveDiffers = errors.New("the archive holds other events than the database")

// Writer appends batches of sealed events to an archive: the data files, then one signed digest
// per file, each digest chained to the one before. It is not safe for concurrent use, and one
// archive must have one Writer at a time.
type Writer struct {
	// Sink is where the archive is.
	Sink Sink
	// Key signs the digests. It may be nil: then digests are written unsigned, with signature "".
	Key ed25519.PrivateKey

	state        ResumeState
	partialFirst int64 // first seq of the batch state.PartialBatchLast ends
	primed       bool
}

// dataFile is one Parquet file of a batch.
type dataFile struct {
	key    string
	events []pgtrail.Event
	sum    [sha256.Size]byte // of the bytes in the sink
}

// WriteBatch archives events, which must be sorted by seq and contiguous, and continue the
// archive: the first event follows the last archived one (seq and prev_hash), unless the archive is
// empty. It groups the events by tenant and UTC day, writes one Parquet file per group (keys as
// in DataKey), and then one digest per file in key order. WriteBatch returns once everything is
// durable in the sink.
//
// After an error the same batch must be retried (the daemon keeps it, or after a restart cuts its
// first batch at ResumeState.PartialBatchLast): the retry rewrites the same keys, Put leaves the
// objects already written alone, and the writer checks that they hold the same events. A batch
// with another range is refused until then, so an interrupted batch never leaves orphan files.
// The Writer calls Resume itself before its first batch if the caller has not.
func (w *Writer) WriteBatch(ctx context.Context, events []pgtrail.Event) error {
	if len(events) == 0 {
		return nil
	}
	if !w.primed {
		if _, err := w.Resume(ctx); err != nil {
			return err
		}
	}
	first, last := events[0].Seq, events[len(events)-1].Seq
	if err := w.check(events); err != nil {
		return fmt.Errorf("write batch %d-%d: %w", first, last, err)
	}
	// From here on objects of this batch may exist in the sink: until it completes, only this
	// batch may be written.
	retry := w.state.PartialBatchLast != 0
	w.state.PartialBatchLast, w.partialFirst = last, first

	files, err := w.writeData(ctx, events, retry)
	if err != nil {
		return fmt.Errorf("write batch %d-%d: %w", first, last, err)
	}
	prevKey, prevSig := w.state.LastDigestKey, w.state.LastDigestSignature
	for n, f := range files {
		d := Digest{
			Version:             DigestVersion,
			FileKey:             f.key,
			FileSHA256:          hex.EncodeToString(f.sum[:]),
			Rows:                int64(len(f.events)),
			FirstSeq:            f.events[0].Seq,
			LastSeq:             f.events[len(f.events)-1].Seq,
			FirstEntryHash:      hex.EncodeToString(f.events[0].EntryHash),
			LastEntryHash:       hex.EncodeToString(f.events[len(f.events)-1].EntryHash),
			BatchFirstSeq:       first,
			BatchLastSeq:        last,
			PrevDigestKey:       prevKey,
			PrevDigestSignature: prevSig,
			Key:                 DigestKey(first, last, n),
		}
		d.sign(w.Key)
		if d, err = w.putDigest(ctx, d, retry); err != nil {
			return fmt.Errorf("write batch %d-%d: %w", first, last, err)
		}
		prevKey, prevSig = d.Key, d.Signature
	}
	w.partialFirst = 0
	w.state = ResumeState{
		LastSeq:             last,
		LastEntryHash:       slices.Clone(events[len(events)-1].EntryHash),
		LastDigestKey:       prevKey,
		LastDigestSignature: prevSig,
	}
	return nil
}

// check validates the batch against itself and the archive's end.
func (w *Writer) check(events []pgtrail.Event) error {
	first, last := events[0].Seq, events[len(events)-1].Seq
	if first < 1 {
		return fmt.Errorf("%w: seq %d is not positive", ErrBadBatch, first)
	}
	for i := range events {
		e := &events[i]
		if e.Seq != first+int64(i) {
			return fmt.Errorf("%w: seq %d follows seq %d: events must be sorted and contiguous", ErrBadBatch, e.Seq, events[i-1].Seq)
		}
		if len(e.EntryHash) != sha256.Size || len(e.PrevHash) != sha256.Size {
			return fmt.Errorf("%w: seq %d: prev_hash or entry_hash is not a SHA-256 sum", ErrBadBatch, e.Seq)
		}
		if i > 0 && !bytes.Equal(e.PrevHash, events[i-1].EntryHash) {
			return fmt.Errorf("%w: seq %d: prev_hash is not the entry_hash of seq %d", ErrBadBatch, e.Seq, e.Seq-1)
		}
	}
	st := w.state
	if st.LastSeq > 0 {
		if first != st.LastSeq+1 {
			return fmt.Errorf("%w: starts at seq %d but the archive ends at seq %d", ErrBadBatch, first, st.LastSeq)
		}
		if !bytes.Equal(events[0].PrevHash, st.LastEntryHash) {
			return fmt.Errorf("%w: seq %d: prev_hash is not the entry_hash of the archived seq %d", ErrBadBatch, first, st.LastSeq)
		}
	}
	if st.PartialBatchLast != 0 && (first != w.partialFirst || last != st.PartialBatchLast) {
		return fmt.Errorf("%w: batch %d-%d was interrupted and must be completed first: retry it with exactly seq %d to %d",
			ErrBadBatch, w.partialFirst, st.PartialBatchLast, w.partialFirst, st.PartialBatchLast)
	}
	return nil
}

// putConcurrency is how many data files of a batch are written at once: object stores answer
// each request in tens of milliseconds, and a batch may span many tenants and days.
const putConcurrency = 8

// writeData groups events into files by key and writes them, a few at a time. Every file is
// durable when it returns without error.
func (w *Writer) writeData(ctx context.Context, events []pgtrail.Event, retry bool) ([]dataFile, error) {
	first, last := events[0].Seq, events[len(events)-1].Seq
	byKey := map[string]*dataFile{}
	var files []*dataFile
	for _, e := range events {
		key := DataKey(e.TenantID, e.OccurredAt, first, last)
		f := byKey[key]
		if f == nil {
			f = &dataFile{key: key}
			byKey[key] = f
			files = append(files, f)
		}
		f.events = append(f.events, e)
	}
	slices.SortFunc(files, func(a, b *dataFile) int { return strings.Compare(a.key, b.key) })
	err := forEach(ctx, len(files), putConcurrency, func(ctx context.Context, i int) error {
		f := files[i]
		data, err := EncodeParquet(f.events)
		if err != nil {
			return err
		}
		if retry {
			if data, err = w.existingData(ctx, f, data); err != nil {
				return err
			}
		}
		if err := w.Sink.Put(ctx, f.key, data); err != nil {
			return err
		}
		f.sum = sha256.Sum256(data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]dataFile, len(files))
	for i, f := range files {
		out[i] = *f
	}
	return out, nil
}

// forEach calls fn for 0..n-1, at most limit at a time, and returns the first error; after an
// error the calls not yet started are skipped.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// existingData returns the bytes stored under f.key if the object exists and holds f's events
// (it may differ in bytes when written by another version of the encoder), data if it does not
// exist, and an error if it holds other events.
func (w *Writer) existingData(ctx context.Context, f *dataFile, data []byte) ([]byte, error) {
	stored, err := w.Sink.Get(ctx, f.key)
	if errors.Is(err, ErrNotFound) {
		return data, nil
	}
	if err != nil {
		return nil, err
	}
	if bytes.Equal(stored, data) {
		return stored, nil
	}
	got, err := DecodeParquet(stored)
	if err != nil {
		return nil, fmt.Errorf("archived %s is unreadable: %w", f.key, err)
	}
	if !sameEvents(got, f.events) {
		return nil, fmt.Errorf("%w: %w: archived %s holds other events than the retried batch", ErrBadBatch, ErrArchiveDiffers, f.key)
	}
	return stored, nil
}

// putDigest writes d. On a retry an existing digest must match d except for the signature (the
// key may have changed since); the stored one is returned so the chain links to what is stored.
func (w *Writer) putDigest(ctx context.Context, d Digest, retry bool) (Digest, error) {
	if retry {
		data, err := w.Sink.Get(ctx, d.Key)
		switch {
		case err == nil:
			stored, err := ParseDigest(data)
			if err != nil {
				return Digest{}, fmt.Errorf("archived digest %s: %w", d.Key, err)
			}
			stored.Key = d.Key
			if !bytes.Equal(stored.SigningBytes(), d.SigningBytes()) {
				return Digest{}, fmt.Errorf("%w: archived digest %s differs from the retried batch's", ErrBadBatch, d.Key)
			}
			return stored, nil
		case !errors.Is(err, ErrNotFound):
			return Digest{}, err
		}
	}
	return d, w.Sink.Put(ctx, d.Key, d.Marshal())
}

// sameEvents reports whether a and b are the same chain entries: equal canonical encodings and
// hashes.
func sameEvents(a, b []pgtrail.Event) bool {
	if len(a) != len(b) {
		return false
	}
	var bufA, bufB []byte
	for i := range a {
		bufA = pgtrail.AppendCanonical(bufA[:0], &a[i])
		bufB = pgtrail.AppendCanonical(bufB[:0], &b[i])
		if !bytes.Equal(bufA, bufB) || !bytes.Equal(a[i].PrevHash, b[i].PrevHash) ||
			!bytes.Equal(a[i].EntryHash, b[i].EntryHash) {
			return false
		}
	}
	return true
}
