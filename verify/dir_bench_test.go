package verify_test

import (
	"context"
	"os"
	"testing"

	"github.com/pgtrail/pgtrail/archive"
	"github.com/pgtrail/pgtrail/verify"
)

// BenchmarkVerifyArchiveDir verifies an existing archive, such as one make bench's stream part
// leaves behind with -keep: PGTRAIL_BENCH_ARCHIVE is its URL and PGTRAIL_BENCH_PUBKEY the public
// key file. It is skipped without them. Real archives differ from the synthetic one of
// BenchmarkVerifyArchive in their file sizes and value distributions.
func BenchmarkVerifyArchiveDir(b *testing.B) {
	url, keyFile := os.Getenv("PGTRAIL_BENCH_ARCHIVE"), os.Getenv("PGTRAIL_BENCH_PUBKEY")
	if url == "" || keyFile == "" {
		b.Skip("PGTRAIL_BENCH_ARCHIVE and PGTRAIL_BENCH_PUBKEY not set")
	}
	ctx := context.Background()
	pub, err := archive.LoadPublicKey(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	sink, err := archive.Open(ctx, url, archive.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var entries int64
	for b.Loop() {
		rep, err := (&verify.Verifier{Workers: benchWorkers}).Archive(ctx, sink, pub)
		if err != nil || !rep.Intact() {
			b.Fatalf("verify: %v %+v", err, rep)
		}
		entries += rep.Entries
	}
	b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
}
