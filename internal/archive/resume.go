package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
)

// ResumeState is where an archive's chain ends, as Resume finds it in the sink.
type ResumeState struct {
	// LastSeq is the batch_last_seq of the last complete batch, 0 for an empty archive.
	LastSeq int64
	// LastEntryHash is the entry_hash of event LastSeq; nil for an empty archive.
	LastEntryHash []byte
	// LastDigestKey and LastDigestSignature are those of the last digest of the last complete
	// batch: the next digest chains to them.
	LastDigestKey, LastDigestSignature string
	// PartialBatchLast is the batchLast of a batch that was interrupted (data files or digests
	// exist but not a digest for every data file), else 0. The batch started at LastSeq+1.
	//
	// After a restart the stream daemon must cut its first batch exactly at this seq: the retry
	// then produces the same keys, Put is a no-op for the objects that exist, and the missing
	// files and digests are added. A batch with another range would leave the interrupted files
	// without digests and overlap them, so WriteBatch refuses it.
	PartialBatchLast int64
}

// batchRange is one batch as found in the sink's keys.
type batchRange struct {
	first, last    int64
	files, digests int
}

// Resume reads where the archive in w.Sink ends and primes the writer to continue it. It lists
// events/ and digests/ and reads the digests of the last complete batch.
func (w *Writer) Resume(ctx context.Context) (ResumeState, error) {
	st, partialFirst, err := resume(ctx, w.Sink)
	if err != nil {
		return ResumeState{}, fmt.Errorf("resume archive: %w", err)
	}
	w.state, w.partialFirst, w.primed = st, partialFirst, true
	return st, nil
}

// resume also returns the first seq of the interrupted batch, if any.
func resume(ctx context.Context, sink Sink) (st ResumeState, partialFirst int64, err error) {
	ranges := map[[2]int64]*batchRange{}
	get := func(first, last int64) *batchRange {
		r := ranges[[2]int64{first, last}]
		if r == nil {
			r = &batchRange{first: first, last: last}
			ranges[[2]int64{first, last}] = r
		}
		return r
	}
	dataKeys, err := sink.List(ctx, EventsPrefix)
	if err != nil {
		return ResumeState{}, 0, err
	}
	for _, k := range dataKeys {
		first, last, ok := ParseDataKey(k)
		if !ok {
			return ResumeState{}, 0, fmt.Errorf("unexpected object %s", k)
		}
		get(first, last).files++
	}
	digestKeys, err := listDigestKeys(ctx, sink)
	if err != nil {
		return ResumeState{}, 0, err
	}
	for _, k := range digestKeys {
		get(k.first, k.last).digests++
	}

	sorted := make([]*batchRange, 0, len(ranges))
	for _, r := range ranges {
		sorted = append(sorted, r)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].first < sorted[j].first })
	var lastComplete *batchRange
	for i, r := range sorted {
		if i > 0 && r.first != sorted[i-1].last+1 {
			return ResumeState{}, 0, fmt.Errorf("batch %d-%d does not follow batch %d-%d", r.first, r.last, sorted[i-1].first, sorted[i-1].last)
		}
		complete := r.files > 0 && r.digests == r.files
		switch {
		case complete:
			lastComplete = r
		case i == len(sorted)-1:
			st.PartialBatchLast, partialFirst = r.last, r.first
		default:
			return ResumeState{}, 0, fmt.Errorf("batch %d-%d is incomplete (%d data files, %d digests) but later batches exist",
				r.first, r.last, r.files, r.digests)
		}
	}
	if lastComplete == nil {
		return st, partialFirst, nil
	}
	var keys []digestKey
	for _, k := range digestKeys {
		if k.first == lastComplete.first {
			keys = append(keys, k)
		}
	}
	digests, err := getDigests(ctx, sink, keys)
	if err != nil {
		return ResumeState{}, 0, err
	}
	for i, d := range digests {
		if keys[i].n != i {
			return ResumeState{}, 0, fmt.Errorf("batch %d-%d: digest %d is missing", lastComplete.first, lastComplete.last, i)
		}
		if d.BatchFirstSeq != lastComplete.first || d.BatchLastSeq != lastComplete.last {
			return ResumeState{}, 0, fmt.Errorf("digest %s names batch %d-%d", d.Key, d.BatchFirstSeq, d.BatchLastSeq)
		}
		if d.LastSeq == lastComplete.last {
			if st.LastEntryHash, err = hex.DecodeString(d.LastEntryHash); err != nil || len(st.LastEntryHash) != sha256.Size {
				return ResumeState{}, 0, fmt.Errorf("digest %s: bad last_entry_hash %q", d.Key, d.LastEntryHash)
			}
		}
	}
	if st.LastEntryHash == nil {
		return ResumeState{}, 0, fmt.Errorf("batch %d-%d: no digest covers its last seq", lastComplete.first, lastComplete.last)
	}
	lastDigest := digests[len(digests)-1]
	st.LastSeq = lastComplete.last
	st.LastDigestKey, st.LastDigestSignature = lastDigest.Key, lastDigest.Signature
	return st, partialFirst, nil
}
