package verify

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/pgtrail/pgtrail/archive"
)

// object is one object of a batch as read: its content, or why it could not be read (an error
// wrapping archive.ErrNotFound when it is gone).
type object struct {
	data []byte
	err  error
}

// fetchBatch reads j's digests and data files, in the order runBatch checks them, the data files
// into buffers from bufs (runBatch gives them back). It stops at the first error other than a
// missing object: the batch cannot be verified, and runBatch reports it.
func fetchBatch(ctx context.Context, sink archive.Sink, j *batchJob, bufs *slicePool[byte]) {
	j.fetched = true
	b := j.keys
	j.digestObjs = make([]object, 0, len(b.digests))
	for _, ref := range b.digests {
		data, err := sink.Get(ctx, ref.key)
		j.digestObjs = append(j.digestObjs, object{data, err})
		if err != nil && !errors.Is(err, archive.ErrNotFound) {
			return
		}
	}
	j.fileObjs = make([]object, 0, len(b.data))
	for _, key := range b.data {
		buf := bufs.largest()
		data, err := archive.GetBuffer(ctx, sink, key, buf)
		if err != nil || cap(data) != cap(buf) {
			bufs.put(buf) // not used, or outgrown: the next file may fit it
		}
		j.fileObjs = append(j.fileObjs, object{data, err})
		if err != nil && !errors.Is(err, archive.ErrNotFound) {
			return
		}
	}
}

// releaseBatch gives the buffers of j's data files back to bufs once they are checked.
func releaseBatch(j *batchJob, bufs *slicePool[byte]) {
	for _, o := range j.fileObjs {
		if o.err == nil && cap(o.data) <= maxKeptBuffer {
			bufs.put(o.data)
		}
	}
	j.fileObjs, j.digestObjs = nil, nil
}

// remoteFetchers is how many goroutines read batches ahead from S3 while the workers check the
// ones read. Measured on the kept 1.55M-entry bench archive through a proxy adding 30 ms to each
// request: 4 fetchers with 2 workers 2.2 s, where 4 workers that fetch for themselves took 2.4 s
// (and 8 fetchers 1.8 s, with 30% more memory: on a nearby server, more memory costs more than
// the round trips it hides).
const remoteFetchers = 4

// maxKeptBuffer is the largest file buffer kept for the next file.
const maxKeptBuffer = 64 << 20

// slicePool recycles the large slices of one walk: the entries of batches (a few MiB each) and
// the buffers data files are read into. Not a sync.Pool: every garbage collection empties a
// pool, and each slice made afresh then costs the kernel a page fault per 4 KiB, more CPU on a
// short run than hashing the entries in it. Safe for concurrent use.
type slicePool[E any] struct {
	mu   sync.Mutex
	free [][]E
}

// maxFreeSlices bounds the slices a pool keeps: the batches in flight, plus sorting's spare ones.
const maxFreeSlices = 16

// get returns an empty slice with room for n elements (within reason: a batch's range comes
// from a key name, which may lie): the smallest free one that fits, else a new one with a
// quarter to spare, so that it fits the next batches too.
func (p *slicePool[E]) get(n int64) []E {
	n = min(max(n, 0), 1<<20)
	p.mu.Lock()
	best := -1
	for i, s := range p.free {
		if int64(cap(s)) >= n && (best < 0 || cap(s) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		s := p.free[best]
		p.free = slices.Delete(p.free, best, best+1)
		p.mu.Unlock()
		return s[:0]
	}
	p.mu.Unlock()
	return make([]E, 0, n+n/4)
}

// largest returns the largest free slice, emptied, or nil: for a read whose size is not known
// before it starts.
func (p *slicePool[E]) largest() []E {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return nil
	}
	big := 0
	for i, s := range p.free {
		if cap(s) > cap(p.free[big]) {
			big = i
		}
	}
	s := p.free[big]
	p.free = slices.Delete(p.free, big, big+1)
	return s[:0]
}

// put gives s back for later; when the pool is full, its smallest slice is dropped.
func (p *slicePool[E]) put(s []E) {
	if cap(s) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, s[:0])
	if len(p.free) > maxFreeSlices {
		small := 0
		for i, s := range p.free {
			if cap(s) < cap(p.free[small]) {
				small = i
			}
		}
		p.free = slices.Delete(p.free, small, small+1)
	}
}
