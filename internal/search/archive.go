package search

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// errStop ends a walk early without an error.
var errStop = errors.New("stop")

// File is an archive data file with the partition values in its key.
type File struct {
	Key string
	// Tenant is the tenant=<t> value (archive.TenantPartition of the tenant_id).
	Tenant string
	// Day is the dt=<YYYY-MM-DD> value: the UTC date of the events in the file.
	Day time.Time
	// SHA256 is the hex SHA-256 the digest covering the file records; "" when no digest was
	// read (Filter.IncludeUnverified).
	SHA256 string
}

// maxDayPrefixes bounds listing day by day: with one tenant and a short period, listing each
// day's prefix reads far fewer keys than listing the tenant's whole history.
const maxDayPrefixes = 92

// Files lists the archive's data files that can hold events f selects, pruning by the tenant=
// and dt= partitions of their keys before anything is read: one tenant's prefix when f names a
// tenant (each day's prefix when it also bounds a short period), and only the days between
// f.Since and f.Until. Unless f.IncludeUnverified, only files a digest covers are returned, with
// the SHA-256 it records; unverified are the keys of the others (a batch being uploaded, or a
// file someone added to the archive: verify reports those).
func Files(ctx context.Context, sink archive.Sink, f *Filter) (files []File, unverified []string, err error) {
	all, err := listFiles(ctx, sink, f)
	if err != nil || f.IncludeUnverified {
		return all, nil, err
	}
	sums, err := digestSums(ctx, sink, all)
	if err != nil {
		return nil, nil, err
	}
	for _, file := range all {
		if sum, ok := sums[file.Key]; ok {
			file.SHA256 = sum
			files = append(files, file)
		} else {
			unverified = append(unverified, file.Key)
		}
	}
	return files, unverified, nil
}

// maxDigestListings is how many batches' digests are listed one batch at a time (a variable for
// tests).
var maxDigestListings = 32

// digestSums reads the digests of the batches files belong to and returns the SHA-256 each
// records, by data file key. A digest is small: one read per file, a few at a time. Whether its
// signature verifies is pgtrail verify's to say (readers have no public key).
func digestSums(ctx context.Context, sink archive.Sink, files []File) (map[string]string, error) {
	ranges := map[string]bool{}
	for _, file := range files {
		ranges[strings.TrimSuffix(path.Base(file.Key), ".parquet")] = true
	}
	// A few batches: a listing of each one's digests; many (a query of the whole archive): one
	// listing of them all, rather than a request per batch.
	var keys []string
	if len(ranges) <= maxDigestListings {
		for r := range ranges {
			listed, err := sink.List(ctx, archive.DigestsPrefix+r+"/")
			if err != nil {
				return nil, fmt.Errorf("list digests: %w", err)
			}
			keys = append(keys, listed...)
		}
	} else {
		listed, err := sink.List(ctx, archive.DigestsPrefix)
		if err != nil {
			return nil, fmt.Errorf("list digests: %w", err)
		}
		for _, k := range listed {
			if r, _, ok := strings.Cut(strings.TrimPrefix(k, archive.DigestsPrefix), "/"); ok && ranges[r] {
				keys = append(keys, k)
			}
		}
	}
	sums := make(map[string]string, len(keys))
	var mu sync.Mutex
	errs := make([]error, len(keys))
	sem := make(chan struct{}, readConcurrency*2)
	var wg sync.WaitGroup
	for i, key := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := sink.Get(ctx, key)
			if err != nil {
				errs[i] = fmt.Errorf("read digest: %w", err)
				return
			}
			d, err := archive.ParseDigest(data)
			if err != nil {
				return // unreadable: covers nothing (verify reports it)
			}
			mu.Lock()
			sums[d.FileKey] = d.FileSHA256
			mu.Unlock()
		})
	}
	wg.Wait()
	return sums, errors.Join(errs...)
}

// listFiles is Files without the digests.
func listFiles(ctx context.Context, sink archive.Sink, f *Filter) ([]File, error) {
	var prefixes []string
	first, last := dayRange(f)
	switch {
	case f.Tenant == nil:
		prefixes = []string{archive.EventsPrefix}
	default:
		tp := tenantPartition(*f.Tenant)
		base := archive.EventsPrefix + "tenant=" + tp + "/"
		if !first.IsZero() && !last.IsZero() && int(last.Sub(first)/(24*time.Hour)) < maxDayPrefixes {
			for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
				prefixes = append(prefixes, base+"dt="+d.Format(time.DateOnly)+"/")
			}
		} else {
			prefixes = []string{base}
		}
	}
	var files []File
	for _, p := range prefixes {
		keys, err := sink.List(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("list archive: %w", err)
		}
		for _, k := range keys {
			file, ok := ParseFileKey(k)
			if !ok {
				continue
			}
			if (!first.IsZero() && file.Day.Before(first)) || (!last.IsZero() && file.Day.After(last)) {
				continue
			}
			files = append(files, file)
		}
	}
	return files, nil
}

// ParseFileKey reads the partition values of a data file key
// (events/tenant=<t>/dt=<YYYY-MM-DD>/<range>.parquet).
func ParseFileKey(key string) (File, bool) {
	if _, _, ok := archive.ParseDataKey(key); !ok {
		return File{}, false
	}
	parts := strings.Split(strings.TrimPrefix(key, archive.EventsPrefix), "/")
	if len(parts) != 3 {
		return File{}, false
	}
	tenant, ok1 := strings.CutPrefix(parts[0], "tenant=")
	dt, ok2 := strings.CutPrefix(parts[1], "dt=")
	day, err := time.Parse(time.DateOnly, dt)
	if !ok1 || !ok2 || err != nil || tenant == "" {
		return File{}, false
	}
	return File{Key: key, Tenant: tenant, Day: day}, true
}

// tenantPartition is the tenant=<t> value f.Tenant selects.
func tenantPartition(tenant string) string {
	if tenant == NoTenant {
		return archive.TenantNone
	}
	return archive.TenantPartition(&tenant)
}

// dayRange is the first and last UTC day f's period touches; zero where open.
func dayRange(f *Filter) (first, last time.Time) {
	if !f.Since.IsZero() {
		s := f.Since.UTC()
		first = time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, time.UTC)
	}
	if !f.Until.IsZero() {
		u := f.Until.UTC().Add(-time.Microsecond) // Until is exclusive; occurred_at has microseconds
		last = time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	}
	return first, last
}

// readConcurrency is how many files of a day are fetched at once.
const readConcurrency = 4

// ErrAltered: an archived data file's bytes differ from the SHA-256 its digest records.
var ErrAltered = errors.New("its content differs from the SHA-256 its digest records: it was altered (run pgtrail verify archive)")

// EachArchive calls fn for every archived event f selects, in result order, up to f.Limit. It
// reads one day's files at a time, in the order of the days: memory holds one day's matches.
// unverified are the data files it skipped because no digest covers them (see Files).
func EachArchive(ctx context.Context, sink archive.Sink, f Filter, fn func(*pgtrail.Event) error) (unverified []string, err error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	return eachArchived(ctx, sink, &f, f.Limit, fn)
}

func eachArchived(ctx context.Context, sink archive.Sink, f *Filter, limit int, fn func(*pgtrail.Event) error) ([]string, error) {
	files, unverified, err := Files(ctx, sink, f)
	if err != nil {
		return nil, err
	}
	return unverified, eachFile(ctx, sink, f, files, limit, fn)
}

func eachFile(ctx context.Context, sink archive.Sink, f *Filter, files []File, limit int, fn func(*pgtrail.Event) error) error {
	byDay := map[time.Time][]File{}
	var days []time.Time
	for _, file := range files {
		if _, ok := byDay[file.Day]; !ok {
			days = append(days, file.Day)
		}
		byDay[file.Day] = append(byDay[file.Day], file)
	}
	slices.SortFunc(days, func(a, b time.Time) int {
		if f.NewestFirst {
			return b.Compare(a)
		}
		return a.Compare(b)
	})
	n := 0
	for _, day := range days {
		matches, err := readDay(ctx, sink, byDay[day], f)
		if err != nil {
			return err
		}
		slices.SortFunc(matches, func(a, b pgtrail.Event) int { return less(&a, &b, f.NewestFirst) })
		for i := range matches {
			if limit > 0 && n == limit {
				return nil
			}
			n++
			if err := fn(&matches[i]); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

// readDay fetches and decodes files, a few at a time, and returns the events f selects.
func readDay(ctx context.Context, sink archive.Sink, files []File, f *Filter) ([]pgtrail.Event, error) {
	results := make([][]pgtrail.Event, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, readConcurrency)
	var wg sync.WaitGroup
	for i, file := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := sink.Get(ctx, file.Key)
			if err != nil {
				errs[i] = fmt.Errorf("read archive: %w", err)
				return
			}
			if sum := sha256.Sum256(data); file.SHA256 != "" && hex.EncodeToString(sum[:]) != file.SHA256 {
				errs[i] = fmt.Errorf("read archive %s: %w", file.Key, ErrAltered)
				return
			}
			evs, err := archive.DecodeParquet(data)
			if err != nil {
				errs[i] = fmt.Errorf("read archive %s: %w", path.Base(file.Key), err)
				return
			}
			for _, e := range evs {
				if f.Match(&e) {
					results[i] = append(results[i], e)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(results...), nil
}

// Archive searches the archive in sink: at most f.Limit events (all when 0), Truncated when there
// were more. source names the archive in the result.
func Archive(ctx context.Context, sink archive.Sink, source string, f Filter) (*Result, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	res := &Result{Source: source}
	limit := f.Limit
	if limit > 0 {
		limit++
	}
	unverified, err := eachArchived(ctx, sink, &f, limit, func(e *pgtrail.Event) error {
		if f.Limit > 0 && len(res.Events) == f.Limit {
			res.Truncated = true
			return errStop
		}
		res.Events = append(res.Events, *e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Unverified = unverified
	return res, nil
}
