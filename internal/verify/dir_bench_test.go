package verify_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// BenchmarkVerifyArchiveDir verifies an existing archive, such as one make bench's stream part
// leaves behind with -keep: PGTRAIL_BENCH_ARCHIVE is its URL and PGTRAIL_BENCH_PUBKEY the public
// key file (and PGTRAIL_BENCH_S3_ENDPOINT the server of an s3:// archive not in AWS). It is
// skipped without them. Real archives differ from the synthetic one of
// BenchmarkVerifyArchive in their file sizes and value distributions.
func BenchmarkVerifyArchiveDir(b *testing.B) {
	url, keyFile := os.Getenv("PGTRAIL_BENCH_ARCHIVE"), os.Getenv("PGTRAIL_BENCH_PUBKEY")
	if url == "" || keyFile == "" {
		b.Skip("PGTRAIL_BENCH_ARCHIVE and PGTRAIL_BENCH_PUBKEY not set")
	}
	ctx := context.Background()
	pub, err := archive.LoadPublicKey(ctx, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	// PGTRAIL_BENCH_S3_ENDPOINT: an S3-compatible server (credentials from the AWS environment).
	sink, err := archive.Open(ctx, url, archive.Options{Endpoint: os.Getenv("PGTRAIL_BENCH_S3_ENDPOINT")})
	if err != nil {
		b.Fatal(err)
	}
	var entries int64
	var cpu time.Duration
	for b.Loop() {
		cpu0 := processCPU()
		rep, err := (&verify.Verifier{Workers: benchWorkers}).Archive(ctx, sink, pub)
		cpu += processCPU() - cpu0
		if err != nil || !rep.Intact() {
			b.Fatalf("verify: %v %+v", err, rep)
		}
		entries += rep.Entries
	}
	b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(entries), "cpu-ns/entry")
}

// processCPU is the CPU time (user and system) the process has used: on a shared machine it
// varies less than the wall time does.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
