package verify

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/verify/pqread"
)

// ErrWrongKey is returned when the archive has digests but none verifies with the public key:
// the key given is not the one the archive was signed with (or every digest was re-signed by
// someone else). Either way the archive could not be verified.
var ErrWrongKey = errors.New("no digest of the archive verifies with the public key")

// ErrUnsignedArchive is returned for an archive none of whose digests is signed: no key can
// verify it (ErrWrongKey would blame the key).
var ErrUnsignedArchive = errors.New("the archive's digests are unsigned")

// ErrNotArchive is returned for a sink that holds no digest, no data file and no
// archive.MarkerKey: not a pgtrail archive (a wrong URL, or a directory such as /etc), which
// would otherwise verify as an intact, empty one. A new archive holds the marker.
var ErrNotArchive = errors.New("not a pgtrail archive: it holds no digests/, no events/ and no " + archive.MarkerKey +
	" (pgtrail stream and pgtrail archive init make an archive)")

// Archive verifies the archive in sink against pub with the zero Verifier.
func Archive(ctx context.Context, sink archive.Sink, pub ed25519.PublicKey) (*Report, error) {
	return (&Verifier{}).Archive(ctx, sink, pub)
}

// Archive verifies the archive in sink: every digest's signature (pub), each data file against
// its digest (SHA-256 of the bytes, rows, first and last seq and entry hash), the digests chained
// without gaps by prev_digest_signature, one digest per data file and one data file per digest,
// batches contiguous, each entry's hash recomputed from the Parquet rows and every entry linked
// to the one before it in seq order across files. With v.Since, the batches up to the checkpoint
// are only checked by their keys (present, counted, contiguous) and the checkpointed digest must
// be unchanged; the content of the later batches is verified in full.
//
// A last batch whose digests are not all written yet is the stream daemon at work: it is left
// out and named in Report.InProgress. An error means the archive could not be verified (storage
// unreachable, ErrWrongKey, ErrNotArchive); damage is reported in the Report.
func (v *Verifier) Archive(ctx context.Context, sink archive.Sink, pub ed25519.PublicKey) (*Report, error) {
	rep := &Report{Scope: "archive", StartedAt: time.Now(), Since: v.Since}
	l, err := listArchive(ctx, sink)
	if err != nil {
		return nil, err
	}
	if err := v.walkArchive(ctx, sink, pub, l, rep, nil); err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// batchKeys is one batch as the sink lists it.
type batchKeys struct {
	first, last int64
	data        []string // data file keys, sorted
	digests     []digestRef
}

type digestRef struct {
	key string
	n   int
}

func (b *batchKeys) String() string { return fmt.Sprintf("%d-%d", b.first, b.last) }

// listing is what the sink holds, by batch, in seq order.
type listing struct {
	batches    []*batchKeys
	digestKeys map[string]bool
	unexpected []string
}

// listArchive lists the archive. Digests are listed before data files: a batch the stream daemon
// completes in between then shows all its files and only some digests, and counts as in
// progress, instead of showing digests for files that seem not to exist. A sink with neither,
// and without the archive's marker, is ErrNotArchive.
func listArchive(ctx context.Context, sink archive.Sink) (*listing, error) {
	digestKeys, err := sink.List(ctx, archive.DigestsPrefix)
	if err != nil {
		return nil, fmt.Errorf("list archive: %w", err)
	}
	dataKeys, err := sink.List(ctx, archive.EventsPrefix)
	if err != nil {
		return nil, fmt.Errorf("list archive: %w", err)
	}
	if len(digestKeys) == 0 && len(dataKeys) == 0 {
		marked, err := archive.IsMarked(ctx, sink)
		if err != nil {
			return nil, err
		}
		if !marked {
			return nil, ErrNotArchive
		}
	}
	l := &listing{digestKeys: make(map[string]bool, len(digestKeys))}
	byRange := map[[2]int64]*batchKeys{}
	get := func(first, last int64) *batchKeys {
		b := byRange[[2]int64{first, last}]
		if b == nil {
			b = &batchKeys{first: first, last: last}
			byRange[[2]int64{first, last}] = b
			l.batches = append(l.batches, b)
		}
		return b
	}
	for _, k := range digestKeys {
		first, last, n, ok := archive.ParseDigestKey(k)
		if !ok {
			l.unexpected = append(l.unexpected, k)
			continue
		}
		l.digestKeys[k] = true
		b := get(first, last)
		b.digests = append(b.digests, digestRef{key: k, n: n})
	}
	for _, k := range dataKeys {
		first, last, ok := archive.ParseDataKey(k)
		if !ok {
			l.unexpected = append(l.unexpected, k)
			continue
		}
		b := get(first, last)
		b.data = append(b.data, k)
	}
	slices.SortFunc(l.batches, func(a, b *batchKeys) int {
		return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.last, b.last))
	})
	for _, b := range l.batches {
		slices.Sort(b.data)
		slices.SortFunc(b.digests, func(x, y digestRef) int { return cmp.Compare(x.n, y.n) })
	}
	return l, nil
}

// batchJob is one batch's verification: fetched, decoded and hashed by a worker, then checked in
// order by walkArchive.
type batchJob struct {
	keys  *batchKeys
	ready chan struct{}

	// The batch's objects as read (fetchBatch): its digests and data files, in key order.
	digestObjs, fileObjs []object
	fetched              bool

	ents         []entry
	digests      []archive.Digest // the batch's readable digests, by index
	problems     []Problem
	sigOK, sigNo int
	sigNone      int // of sigNo: digests with no signature at all
	files, bytes int64
	err          error // the batch could not be read
}

// walkArchive verifies the listed archive into rep. When cross is set, it also receives every
// checked entry after the checkpoint, in seq order.
func (v *Verifier) walkArchive(ctx context.Context, sink archive.Sink, pub ed25519.PublicKey, l *listing,
	rep *Report, cross func([]entry) error) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify archive: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	add := func(p Problem) {
		p.Source = SourceArchive
		rep.add(p)
	}
	for _, k := range l.unexpected {
		add(Problem{Kind: Inserted, Key: k, Detail: "an object that is neither a data file nor a digest"})
	}
	batches := l.batches
	if n := len(batches); n > 0 {
		if last := batches[n-1]; len(last.data) > 0 && len(last.digests) < len(last.data) {
			rep.InProgress = last.String()
			batches = batches[:n-1]
		}
	}
	c := newChecker(rep, SourceArchive)
	var prevBatch *batchKeys
	var prevDigestKey, prevDigestSig string
	start := 0
	sigOK, sigNo, sigNone := 0, 0, 0
	if cp := v.Since; cp != nil {
		var ok bool
		var err error
		start, ok, err = v.checkArchiveAnchor(ctx, sink, pub, batches, cp, add)
		if err != nil {
			return err
		}
		if ok {
			sigOK++
		}
		h, err := cp.hash()
		if err != nil {
			return err
		}
		c.anchor(cp.Seq, h)
		prevDigestKey, prevDigestSig = cp.DigestKey, cp.DigestSignature
		if start > 0 {
			prevBatch = batches[start-1]
		}
		for _, b := range batches[:start] {
			rep.Batches++
			rep.Files += int64(len(b.data))
			rep.Digests += int64(len(b.digests))
		}
	}
	// The batches before the checkpoint: their keys only.
	var before *batchKeys
	for _, b := range batches[:start] {
		checkContiguous(before, b, add)
		checkCounts(b, add)
		before = b
	}
	if start == 0 && len(batches) > 0 && v.Since == nil && batches[0].first != 1 {
		add(Problem{Seq: 1, Kind: Deleted, Detail: fmt.Sprintf("the archive starts at seq %d: seq 1 to %d are gone", batches[0].first, batches[0].first-1)})
	}

	var total int64
	for _, b := range batches[start:] {
		total += b.last - b.first + 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// One worker per core checks batches. Reads from a local directory are the workers' own;
	// reads from S3 wait on the network, so readers read the next batches meanwhile (readAhead).
	// More workers instead would only hold more buffers: memory that costs page faults to touch.
	workers := v.workers(1)
	ents, bufs := &slicePool[entry]{}, &slicePool[byte]{}
	work := make(chan *batchJob)
	next := work // where the batches go: to the readers, if any, else straight to the workers
	var ra *readAhead
	inFlight := workers
	if !archive.IsLocal(sink) {
		ra = startReadAhead(ctx, sink, bufs, work)
		next = ra.in
		inFlight += maxReaders
	}
	// Batches in flight hold their objects and entries (megabytes each): enough to keep every
	// worker and reader busy past the batch the checks wait for, no more.
	order := make(chan *batchJob, inFlight)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			w := &archiveWorker{h: newHasher(cross != nil), ents: ents}
			for first := true; ; first = false {
				j, ok := takeBatch(work, ra, first)
				if !ok {
					return
				}
				if !j.fetched {
					fetchBatch(ctx, sink, j, bufs)
				}
				v.runBatch(pub, j, w)
				releaseBatch(j, bufs)
				j.ready <- struct{}{}
			}
		})
	}
	go func() {
		if ra != nil {
			defer ra.close()
		} else {
			defer close(work)
		}
		defer close(order)
		for _, b := range batches[start:] {
			j := &batchJob{keys: b, ready: make(chan struct{}, 1)}
			select {
			case order <- j: // bounds the batches in flight
			case <-ctx.Done():
				return
			}
			next <- j
		}
	}()

	var err error
	for j := range order {
		<-j.ready
		if err != nil {
			continue
		}
		if j.err != nil {
			err = j.err
			cancel(err)
			continue
		}
		b := j.keys
		rep.Batches++
		rep.Files += j.files
		rep.Digests += int64(len(j.digests))
		rep.Bytes += j.bytes
		sigOK += j.sigOK
		sigNo += j.sigNo
		sigNone += j.sigNone
		checkContiguous(prevBatch, b, add)
		prevBatch = b
		for _, p := range j.problems {
			add(p)
		}
		for _, d := range j.digests {
			if d.PrevDigestKey != prevDigestKey || d.PrevDigestSignature != prevDigestSig {
				add(brokenDigestLink(d, prevDigestKey, l))
			}
			prevDigestKey, prevDigestSig = d.Key, d.Signature
		}
		c.keys = b.data
		for i := range j.ents {
			c.next(&j.ents[i])
		}
		v.progress("archive", rep.Entries, total)
		if cross != nil && len(j.ents) > 0 {
			if err = cross(j.ents); err != nil {
				cancel(err)
			}
		}
		ents.put(j.ents)
		j.ents = nil
	}
	wg.Wait()
	if ra != nil {
		rep.Readers = ra.readers()
	}
	if err != nil {
		return err
	}
	if rep.InProgress != "" {
		if err := v.checkInProgress(ctx, sink, l.batches[len(l.batches)-1], c.prevSeq, c.prevHash, add, cross); err != nil {
			return err
		}
	}
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })
	if sigOK == 0 && sigNo > 0 && sigNone == sigNo {
		return fmt.Errorf("verify archive: %w (%d digests): written by pgtrail stream --unsigned (or before signing keys were required): such an archive cannot be verified against a key", ErrUnsignedArchive, sigNo)
	}
	if sigOK == 0 && sigNo > 0 {
		return fmt.Errorf("verify archive: %w (%d digests): wrong --public-key, or every digest was re-signed", ErrWrongKey, sigNo)
	}
	if rep.Intact() && len(batches) > 0 {
		last := batches[len(batches)-1]
		var files int64
		for _, b := range batches {
			files += int64(len(b.data))
		}
		rep.Checkpoint = &Checkpoint{Version: CheckpointVersion, Scope: "archive", Seq: last.last,
			EntryHash: hex.EncodeToString(c.prevHash[:]), DigestKey: prevDigestKey,
			DigestSignature: prevDigestSig, Files: files}
	}
	return nil
}

// checkArchiveAnchor checks what an incremental run relies on: the checkpointed batch and digest
// are still there and unchanged, and the batches up to it hold as many data files as they did.
// It returns the index of the first batch after the checkpoint, and whether the checkpointed
// digest's signature verified.
func (v *Verifier) checkArchiveAnchor(ctx context.Context, sink archive.Sink, pub ed25519.PublicKey,
	batches []*batchKeys, cp *Checkpoint, add func(Problem)) (int, bool, error) {
	when := cp.VerifiedAt.Format(time.RFC3339)
	start := len(batches)
	var files int64
	found := false
	for i, b := range batches {
		if b.last > cp.Seq {
			start = i
			break
		}
		files += int64(len(b.data))
		found = found || b.last == cp.Seq
	}
	switch {
	case len(batches) == 0 || batches[len(batches)-1].last < cp.Seq:
		end := int64(0)
		if len(batches) > 0 {
			end = batches[len(batches)-1].last
		}
		add(Problem{Seq: end + 1, Kind: Deleted, Detail: fmt.Sprintf("the archive ends at seq %d, but it held seq up to %d when verified %s: its tail was removed", end, cp.Seq, when)})
	case !found:
		add(Problem{Seq: cp.Seq, Kind: Deleted, Detail: fmt.Sprintf("no batch ends at the checkpointed seq %d any more (verified %s)", cp.Seq, when)})
	}
	if files != cp.Files {
		kind := Deleted
		if files > cp.Files {
			kind = Inserted
		}
		add(Problem{Seq: cp.Seq, Kind: kind, Detail: fmt.Sprintf("the batches up to seq %d hold %d data files; they held %d when verified %s", cp.Seq, files, cp.Files, when)})
	}
	data, err := sink.Get(ctx, cp.DigestKey)
	if errors.Is(err, archive.ErrNotFound) {
		add(Problem{Seq: cp.Seq, Kind: Deleted, Key: cp.DigestKey, Detail: fmt.Sprintf("the checkpointed digest (verified %s) is gone", when)})
		return start, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read checkpointed digest: %w", err)
	}
	d, err := archive.ParseDigest(data)
	if err != nil {
		add(Problem{Seq: cp.Seq, Kind: Modified, Key: cp.DigestKey, Detail: fmt.Sprintf("the checkpointed digest is unreadable: %v", err)})
		return start, false, nil
	}
	d.Key = cp.DigestKey
	sigErr := archive.VerifyDigest(d, pub)
	if sigErr != nil || d.Signature != cp.DigestSignature {
		add(Problem{Seq: cp.Seq, Kind: Modified, Key: cp.DigestKey, Detail: fmt.Sprintf("the checkpointed digest changed since it was verified %s", when)})
	}
	return start, sigErr == nil, nil
}

// checkContiguous reports a gap or an overlap between consecutive batches.
func checkContiguous(prev, b *batchKeys, add func(Problem)) {
	if prev == nil {
		return
	}
	switch {
	case b.first > prev.last+1:
		add(Problem{Seq: prev.last + 1, Kind: Deleted, Detail: fmt.Sprintf("no batch holds seq %d to %d: their data files and digests are gone", prev.last+1, b.first-1)})
	case b.first <= prev.last:
		add(Problem{Seq: b.first, Kind: Inserted, Detail: fmt.Sprintf("batch %s overlaps batch %s", b, prev)})
	}
}

// checkCounts checks a batch by its keys alone: digests 0..n-1, one per data file.
func checkCounts(b *batchKeys, add func(Problem)) {
	for i, d := range b.digests {
		if d.n != i {
			add(Problem{Seq: b.first, Kind: Deleted, Key: archive.DigestKey(b.first, b.last, i), Detail: fmt.Sprintf("digest %d of batch %s is gone", i, b)})
			break
		}
	}
	switch {
	case len(b.data) == 0:
		add(Problem{Seq: b.first, Kind: Deleted, Detail: fmt.Sprintf("batch %s has %d digests but its data files are gone", b, len(b.digests))})
	case len(b.digests) > len(b.data):
		add(Problem{Seq: b.first, Kind: Deleted, Detail: fmt.Sprintf("batch %s has %d digests for %d data files: data files are gone", b, len(b.digests), len(b.data))})
	case len(b.digests) < len(b.data):
		add(Problem{Seq: b.first, Kind: Deleted, Detail: fmt.Sprintf("batch %s has %d data files but %d digests: digests are gone", b, len(b.data), len(b.digests))})
	}
}

// brokenDigestLink describes a digest that does not chain to the one before it.
func brokenDigestLink(d archive.Digest, prevKey string, l *listing) Problem {
	p := Problem{Seq: d.FirstSeq, Key: d.Key}
	switch {
	case d.PrevDigestKey != prevKey && d.PrevDigestKey != "" && !l.digestKeys[d.PrevDigestKey]:
		p.Kind = Deleted
		p.Detail = fmt.Sprintf("the digest it chains to, %s, is gone", d.PrevDigestKey)
	case d.PrevDigestKey != prevKey && prevKey == "":
		p.Kind = Deleted
		p.Detail = fmt.Sprintf("it chains to %s, but no digest comes before it", d.PrevDigestKey)
	default:
		p.Kind = Relinked
		p.Detail = fmt.Sprintf("it does not chain to the digest before it (%s): prev_digest_key %q and prev_digest_signature must name it",
			prevKey, d.PrevDigestKey)
	}
	return p
}

// runBatch checks and hashes one batch into j, from its objects as fetchBatch read them. Damage
// goes into j.problems; j.err is set only when the storage could not be read.
func (v *Verifier) runBatch(pub ed25519.PublicKey, j *batchJob, w *archiveWorker) {
	b := j.keys
	add := func(p Problem) {
		if len(j.problems) < maxProblems {
			j.problems = append(j.problems, p)
		}
	}
	checkCounts(b, add)
	j.ents = w.ents.get(b.last - b.first + 1)
	byFile := map[string]*archive.Digest{}
	for i, ref := range b.digests {
		if i >= len(j.digestObjs) {
			j.err = errors.New("read digest: the batch was not read") // canceled
			return
		}
		data, err := j.digestObjs[i].data, j.digestObjs[i].err
		if errors.Is(err, archive.ErrNotFound) {
			add(Problem{Seq: b.first, Kind: Deleted, Key: ref.key, Detail: "the digest was listed but is gone"})
			continue
		}
		if err != nil {
			j.err = fmt.Errorf("read digest: %w", err)
			return
		}
		d, err := archive.ParseDigest(data)
		if err != nil {
			add(Problem{Seq: b.first, Kind: Modified, Key: ref.key, Detail: fmt.Sprintf("the digest is unreadable: %v", err)})
			continue
		}
		d.Key = ref.key
		if err := archive.VerifyDigest(d, pub); err != nil {
			j.sigNo++
			detail := "its signature does not verify with the public key: it was altered, or signed with another key"
			if errors.Is(err, archive.ErrUnsigned) {
				detail = "it is not signed"
				j.sigNone++
			}
			add(Problem{Seq: d.FirstSeq, Kind: Forged, Key: ref.key, Detail: detail})
		} else {
			j.sigOK++
		}
		if d.BatchFirstSeq != b.first || d.BatchLastSeq != b.last {
			add(Problem{Seq: b.first, Kind: Modified, Key: ref.key, Detail: fmt.Sprintf("the digest names batch %d-%d", d.BatchFirstSeq, d.BatchLastSeq)})
		}
		if byFile[d.FileKey] != nil {
			add(Problem{Seq: b.first, Kind: Inserted, Key: ref.key, Detail: fmt.Sprintf("a second digest for %s", d.FileKey)})
		} else {
			byFile[d.FileKey] = &d
		}
		j.digests = append(j.digests, d)
	}
	for i, key := range b.data {
		d := byFile[key]
		delete(byFile, key)
		if d == nil {
			add(Problem{Seq: b.first, Kind: Inserted, Key: key, Detail: "no digest describes this data file"})
		}
		if err := v.runFile(j, int32(i+1), d, w, add); err != nil {
			j.err = err
			return
		}
	}
	gone := make([]string, 0, len(byFile))
	for k := range byFile {
		gone = append(gone, k)
	}
	slices.Sort(gone)
	for _, k := range gone {
		add(Problem{Seq: byFile[k].FirstSeq, Kind: Deleted, Key: k, Detail: fmt.Sprintf("the data file that digest %s describes is gone", byFile[k].Key)})
	}
	j.ents = sortBySeq(j.ents, b.first, b.last, w.ents)
}

// archiveWorker is what one worker reuses from batch to batch.
type archiveWorker struct {
	h    *hasher
	dec  pqread.Decoder
	ents *slicePool[entry] // the walk's, shared by its workers
}

// sortBySeq puts the entries of a batch, read file by file, in seq order. Files split a batch by
// tenant and day, so their rows interleave; each seq of the batch's range normally appears once,
// and then each entry goes straight to its place. Anything else (a duplicate, a seq outside the
// range) falls back to a stable sort.
func sortBySeq(ents []entry, first, last int64, free *slicePool[entry]) []entry {
	if slices.IsSortedFunc(ents, compareSeq) {
		return ents
	}
	if int64(len(ents)) != last-first+1 {
		slices.SortStableFunc(ents, compareSeq)
		return ents
	}
	out := free.get(int64(len(ents)))[:len(ents)]
	for i := range out {
		out[i].seq = 0
	}
	for i := range ents {
		k := ents[i].seq - first
		if k < 0 || k >= int64(len(out)) || out[k].seq != 0 {
			free.put(out)
			slices.SortStableFunc(ents, compareSeq)
			return ents
		}
		out[k] = ents[i]
	}
	free.put(ents)
	return out
}

func compareSeq(a, b entry) int { return cmp.Compare(a.seq, b.seq) }

// runFile checks and hashes one data file of j's batch, b.data[file-1], as read, against its
// digest d (nil when it has none).
func (v *Verifier) runFile(j *batchJob, file int32, d *archive.Digest, w *archiveWorker, add func(Problem)) error {
	b := j.keys
	key := b.data[file-1]
	if int(file) > len(j.fileObjs) {
		return errors.New("read data file: the batch was not read") // canceled
	}
	data, err := j.fileObjs[file-1].data, j.fileObjs[file-1].err
	if errors.Is(err, archive.ErrNotFound) {
		add(Problem{Seq: b.first, Kind: Deleted, Key: key, Detail: "the data file was listed but is gone"})
		return nil
	}
	if err != nil {
		return fmt.Errorf("read data file: %w", err)
	}
	j.files++
	j.bytes += int64(len(data))
	if d != nil {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.FileSHA256 {
			add(Problem{Seq: d.FirstSeq, Kind: Modified, Key: key, Detail: fmt.Sprintf("its SHA-256 differs from the file_sha256 of digest %s", d.Key)})
		}
	}
	from := len(j.ents)
	part := partitionCheck{key: key, first: b.first, last: b.last}
	h := w.h
	err = w.dec.Decode(data, func(rows []pqread.Row) error {
		j.ents = slices.Grow(j.ents, len(rows))
		for i := range rows {
			e := &rows[i].Event
			j.ents = j.ents[:len(j.ents)+1]
			out := &j.ents[len(j.ents)-1]
			h.hashRow(&rows[i], out)
			out.file = file
			if e.Seq < b.first || e.Seq > b.last {
				add(Problem{Seq: e.Seq, Kind: Inserted, Key: key, Detail: fmt.Sprintf("seq %d is outside its batch %s", e.Seq, b)})
			}
			if want, ok := part.check(e.TenantID, out.occurredAt); !ok {
				add(Problem{Seq: e.Seq, Kind: Modified, Key: key, Detail: fmt.Sprintf("its tenant and day put it in %s", want)})
			}
		}
		return nil
	})
	if err != nil {
		add(Problem{Seq: b.first, Kind: Modified, Key: key, Detail: fmt.Sprintf("the data file is unreadable: %v", err)})
	}
	if d == nil {
		return nil
	}
	ents := j.ents[from:]
	switch {
	case int64(len(ents)) != d.Rows:
		add(Problem{Seq: d.FirstSeq, Kind: Modified, Key: key, Detail: fmt.Sprintf("it holds %d rows, digest %s says %d", len(ents), d.Key, d.Rows)})
	case len(ents) > 0 && (ents[0].seq != d.FirstSeq || ents[len(ents)-1].seq != d.LastSeq):
		add(Problem{Seq: d.FirstSeq, Kind: Modified, Key: key, Detail: fmt.Sprintf("it holds seq %d to %d, digest %s says %d to %d",
			ents[0].seq, ents[len(ents)-1].seq, d.Key, d.FirstSeq, d.LastSeq)})
	case len(ents) > 0 && (hex.EncodeToString(ents[0].entryHash[:]) != d.FirstEntryHash ||
		hex.EncodeToString(ents[len(ents)-1].entryHash[:]) != d.LastEntryHash):
		add(Problem{Seq: d.FirstSeq, Kind: Modified, Key: key, Detail: fmt.Sprintf("its first or last entry_hash differs from digest %s", d.Key)})
	}
	return nil
}

// partitionCheck checks that each row of a data file belongs in it (tenant=, dt= and batch
// range of its key), computing the expected key only when tenant or day change.
type partitionCheck struct {
	key         string
	first, last int64
	tenant      string
	null        bool
	day         int64
	want        string
}

const microsPerDay = 86400 * 1000000

func (p *partitionCheck) check(tenant *string, occurredAt int64) (string, bool) {
	day := occurredAt / microsPerDay
	if occurredAt < 0 && occurredAt%microsPerDay != 0 {
		day--
	}
	null := tenant == nil
	t := ""
	if !null {
		t = *tenant
	}
	if p.want == "" || null != p.null || t != p.tenant || day != p.day {
		p.null, p.tenant, p.day = null, strings.Clone(t), day
		p.want = archive.DataKey(tenant, time.UnixMicro(occurredAt).UTC(), p.first, p.last)
	}
	return p.want, p.want == p.key
}

// inProgressSkew is how far in the future an entry of the batch being archived may be dated
// (the clocks of the database and of the verifying host differ).
const inProgressSkew = 5 * time.Minute

// checkInProgress checks the last batch, whose digests are not all written: the stream daemon
// at work, or data files someone else wrote (a file no digest covers, the newest batch edited and
// its digest deleted). No signature covers it, so it is held to what the stream would have
// written: entries inside its range, continuing the verified chain (after afterSeq, linked to
// afterHash), each matching its entry_hash, and younger than the archive lag; and, with the
// database at hand (cross, verify all), the same as the database's entries. Its problems are
// reported; it is not counted as verified. (Without the cross-check, an archive writer could
// rewrite that batch with its hashes recomputed: the hash is unkeyed and the encoding public.)
func (v *Verifier) checkInProgress(ctx context.Context, sink archive.Sink, b *batchKeys, afterSeq int64,
	afterHash [sha256.Size]byte, add func(Problem), cross func([]entry) error) error {
	j := &batchJob{keys: b}
	bufs := &slicePool[byte]{}
	fetchBatch(ctx, sink, j, bufs)
	defer releaseBatch(j, bufs)
	if j.err != nil {
		return j.err
	}
	w := &archiveWorker{h: newHasher(false), ents: &slicePool[entry]{}}
	for i := range b.data {
		if err := v.runFile(j, int32(i+1), nil, w, add); err != nil {
			return err
		}
	}
	ents := sortBySeq(j.ents, b.first, b.last, w.ents)
	var scratch Report // the chain's breaks, without counting the entries as verified
	c := newChecker(&scratch, SourceArchive)
	c.anchor(afterSeq, afterHash)
	c.keys = b.data
	for i := range ents {
		c.next(&ents[i])
	}
	for _, p := range scratch.Problems {
		p.Detail += " (in batch " + b.String() + ", which no signed digest covers yet)"
		add(p)
	}
	if cross != nil && len(ents) > 0 {
		if err := cross(ents); err != nil {
			return err
		}
	}
	lag := v.ArchiveLag
	if lag == 0 {
		lag = DefaultArchiveLag
	}
	now := v.clock()
	for i := range ents {
		at := time.UnixMicro(ents[i].occurredAt)
		if at.Before(now.Add(-lag)) || at.After(now.Add(inProgressSkew)) {
			add(Problem{Seq: ents[i].seq, Kind: Unsigned, Key: c.keyOf(&ents[i]), Detail: fmt.Sprintf(
				"no signed digest covers batch %s, and its entry of %s is not one the stream is archiving now (archive lag %s)",
				b, at.UTC().Format(time.RFC3339), lag)})
			break
		}
	}
	return nil
}
