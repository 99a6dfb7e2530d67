package verify

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/archive"
)

// All runs DB and Archive with the zero Verifier and cross-checks them.
func All(ctx context.Context, db Querier, sink archive.Sink, pub ed25519.PublicKey) (*Report, error) {
	return (&Verifier{}).All(ctx, db, sink, pub)
}

// All verifies the database (DB) and the archive (Archive) concurrently, and compares them entry
// by entry: every archived entry must be in the database with the same content, and every
// database entry older than v.ArchiveLag must be archived. Differences are named modified,
// deleted, inserted, reordered, missing_from_archive or missing_from_database, with source
// "cross". This is what catches a rewrite of the database that the chain alone cannot show: a
// forged entry inserted, or one deleted, with every hash after it recomputed and the chain head
// moved.
//
// The report holds the two checks' reports (DB, Archive) and every problem of the three, each
// with its source. Its Checkpoint, when intact, is at the end of the archive.
func (v *Verifier) All(ctx context.Context, db Querier, sink archive.Sink, pub ed25519.PublicKey) (*Report, error) {
	start := time.Now()
	rep := &Report{Scope: "all", StartedAt: start, Since: v.Since}
	dbRep := &Report{Scope: "db", StartedAt: start, Since: v.Since}
	arcRep := &Report{Scope: "archive", StartedAt: start, Since: v.Since}
	lag := v.ArchiveLag
	if lag <= 0 {
		lag = DefaultArchiveLag
	}
	cutoff := v.clock().Add(-lag)

	// List the archive first: the database snapshot taken after it holds everything archived
	// by then (entries are sealed before they are archived).
	l, err := listArchive(ctx, sink)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dbCh := make(chan []xentry, 8)
	arcCh := make(chan []xentry, 8)
	send := func(ch chan<- []xentry) func([]entry) error {
		return func(ents []entry) error {
			select {
			case ch <- toX(ents):
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	var since int64
	if v.Since != nil {
		since = v.Since.Seq
	}
	if v.Pruned != nil {
		since = max(since, v.Pruned.Seq) // archived only, by design
	}
	var wg sync.WaitGroup
	var dbErr, arcErr error
	wg.Go(func() {
		defer close(dbCh)
		dbErr = inSnapshot(ctx, db, func(tx pgx.Tx, owned bool) error {
			return v.walkDB(ctx, tx, owned, dbRep, send(dbCh))
		})
		if dbErr != nil {
			cancel(dbErr)
		}
	})
	wg.Go(func() {
		defer close(arcCh)
		arcErr = v.walkArchive(ctx, sink, pub, l, arcRep, send(arcCh))
		if arcErr != nil {
			cancel(arcErr)
		}
	})
	cc := newCrossChecker(rep, dbCh, since, cutoff)
	for chunk := range arcCh {
		for _, a := range chunk {
			cc.archived(a)
		}
	}
	cc.finish()
	wg.Wait()
	if err := firstCause(dbErr, arcErr); err != nil {
		return nil, err
	}

	dbRep.finish()
	arcRep.finish()
	cross := rep.Problems
	rep.Problems, rep.Truncated = nil, dbRep.Truncated || arcRep.Truncated
	for _, ps := range [][]Problem{dbRep.Problems, arcRep.Problems, cross} {
		for _, p := range ps {
			rep.add(p)
		}
	}
	rep.DB, rep.Archive = dbRep, arcRep
	rep.Entries, rep.FirstSeq, rep.LastSeq = dbRep.Entries, dbRep.FirstSeq, dbRep.LastSeq
	rep.HeadSeq, rep.HeadHash, rep.Unsealed = dbRep.HeadSeq, dbRep.HeadHash, dbRep.Unsealed
	rep.Batches, rep.Files, rep.Digests, rep.Bytes = arcRep.Batches, arcRep.Files, arcRep.Digests, arcRep.Bytes
	rep.InProgress = arcRep.InProgress
	dbRep.Checkpoint = nil
	if rep.Intact() && arcRep.Checkpoint != nil {
		cp := *arcRep.Checkpoint
		cp.Scope = "all"
		rep.Checkpoint = &cp
	}
	arcRep.Checkpoint = nil
	rep.finish()
	return rep, nil
}

// firstCause returns the error that stopped the run: the one that is not a cancellation caused
// by the other.
func firstCause(errs ...error) error {
	var canceled error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			canceled = err
		default:
			return err
		}
	}
	return canceled
}
