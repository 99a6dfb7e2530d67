package verify

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pgtrail/pgtrail/internal/archive"
)

// object is one object of a batch as read: its content, or why it could not be read (an error
// wrapping archive.ErrNotFound when it is gone).
type object struct {
	data []byte
	err  error
}

// fetchBatch reads j's digests and data files, in the order runBatch checks them, the data files
// into buffers from bufs (runBatch gives them back). The digests are read while the data files
// are: from S3 each read is a round trip. Each kind stops at its first error other than a
// missing object: the batch cannot be verified, and runBatch reports it.
func fetchBatch(ctx context.Context, sink archive.Sink, j *batchJob, bufs *slicePool[byte]) {
	j.fetched = true
	b := j.keys
	var digests sync.WaitGroup
	digests.Go(func() {
		j.digestObjs = make([]object, 0, len(b.digests))
		for _, ref := range b.digests {
			data, err := sink.Get(ctx, ref.key)
			j.digestObjs = append(j.digestObjs, object{data, err})
			if err != nil && !errors.Is(err, archive.ErrNotFound) {
				return
			}
		}
	})
	defer digests.Wait()
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

// maxReaders bounds the goroutines that read batches ahead from a remote archive while the
// workers check the ones read.
const maxReaders = 8

// readAhead reads batches from a remote archive ahead of the workers, with as few readers as
// keep them busy: it starts with one, and adds one each time a worker that has finished a batch
// finds no batch read for it, up to maxReaders. Every reader holds a batch's files (megabytes)
// in memory, and fresh memory costs page faults. Measured on the kept 1.55M-entry bench
// archive, 2 workers, side by side: through a proxy adding 30 ms to each request, 2.09–2.12 s
// (8 readers reached) where a fixed 4 took 2.51–2.66 s. From an S3 server on the same two cores,
// reads wait for CPU rather than the network, so readers grow all the same, to no effect on
// speed (1.70–1.73 s against 1.62–1.80 s) for about 10 MiB more.
type readAhead struct {
	in     chan *batchJob // batches to read
	more   chan struct{}  // one token per reader allowed to start
	idle   chan struct{}  // closed with in: readers not started by then never will
	active atomic.Int32   // readers started
}

// startReadAhead reads the batches sent to in with sink into bufs' buffers and hands them on to
// out, which it closes once in is closed and every batch is handed on.
func startReadAhead(ctx context.Context, sink archive.Sink, bufs *slicePool[byte], out chan<- *batchJob) *readAhead {
	r := &readAhead{in: make(chan *batchJob), more: make(chan struct{}, maxReaders-1), idle: make(chan struct{})}
	var wg sync.WaitGroup
	for i := range maxReaders {
		wg.Go(func() {
			if i > 0 {
				select {
				case <-r.more:
				case <-r.idle:
					return
				}
			}
			r.active.Add(1)
			for j := range r.in {
				fetchBatch(ctx, sink, j, bufs)
				out <- j
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return r
}

// starved tells that a worker waits for a batch to be read: one more reader may start.
func (r *readAhead) starved() {
	select {
	case r.more <- struct{}{}:
	default: // every reader may already start
	}
}

// close tells that no more batches are coming.
func (r *readAhead) close() {
	close(r.in)
	close(r.idle)
}

// readers returns how many readers have started.
func (r *readAhead) readers() int { return int(r.active.Load()) }

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

// takeBatch returns the next batch for a worker, and false when there are no more. A worker
// that has checked a batch (not first) and must wait for the next one tells ra (nil: the worker
// reads for itself).
func takeBatch(work <-chan *batchJob, ra *readAhead, first bool) (*batchJob, bool) {
	select {
	case j, ok := <-work:
		return j, ok
	default:
	}
	if ra != nil && !first {
		ra.starved()
	}
	j, ok := <-work
	return j, ok
}
