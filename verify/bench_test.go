package verify_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/archive"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/verify"
	"github.com/pgtrail/pgtrail/verify/verifytest"
)

// Benchmark sizes: the issue's ≥100k entries of ~500 bytes of canonical encoding.
var benchWorkers = 0

const (
	benchEntries   = 100_000
	benchEntrySize = 500
	benchBatch     = 10_000 // the stream daemon's default --batch-events
)

// BenchmarkVerifyArchive verifies a 100k-entry archive in a temporary directory, and in the same
// run measures raw SHA-256 chaining of the same entries on one goroutine: the two rates and their
// ratio are reported side by side (entries/s, sha256-entries/s, ratio).
func BenchmarkVerifyArchive(b *testing.B) {
	ctx := context.Background()
	events := verifytest.Events(benchEntries, benchEntrySize)
	canon := verifytest.Canonical(events)
	pub, priv := archive.GenerateKey()
	sink, err := archive.Open(ctx, "file://"+b.TempDir(), archive.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := verifytest.WriteArchive(ctx, sink, priv, events, benchBatch); err != nil {
		b.Fatal(err)
	}
	events = nil
	var verifyTime, verifyCPU, shaTime time.Duration
	var files int64
	for b.Loop() {
		start, cpu0 := time.Now(), processCPU()
		rep, err := verify.Archive(ctx, sink, pub)
		verifyTime += time.Since(start)
		verifyCPU += processCPU() - cpu0
		if err != nil || !rep.Intact() || rep.Entries != benchEntries {
			b.Fatalf("verify: %v %+v", err, rep)
		}
		files = rep.Files
		start = time.Now()
		verifytest.ChainSHA256(canon)
		shaTime += time.Since(start)
	}
	v := float64(b.N*benchEntries) / verifyTime.Seconds()
	s := float64(b.N*benchEntries) / shaTime.Seconds()
	b.ReportMetric(v, "entries/s")
	b.ReportMetric(s, "sha256-entries/s")
	b.ReportMetric(v/s, "ratio")
	b.ReportMetric(float64(verifyCPU.Nanoseconds())/float64(b.N*benchEntries), "cpu-ns/entry")
	b.ReportMetric(float64(shaTime.Nanoseconds())/float64(b.N*benchEntries), "sha256-ns/entry")
	b.ReportMetric(float64(files), "files")
}

// BenchmarkChainSHA256 is raw SHA-256 chaining of ~500-byte entries on one goroutine: the speed
// verification is measured against.
func BenchmarkChainSHA256(b *testing.B) {
	canon := verifytest.Canonical(verifytest.Events(benchEntries, benchEntrySize))
	for b.Loop() {
		verifytest.ChainSHA256(canon)
	}
	b.ReportMetric(float64(b.N*benchEntries)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkVerifyDB verifies a 100k-entry trail of ~500-byte entries in PostgreSQL and, in the
// same run, reads the same rows with COPY into io.Discard through pgconn (binary format, as
// DB reads them, and text), and binary again on a new connection: verification is measured
// against the bare cost of reading. Reported: entries/s of each and the ratio of verification
// to each COPY. All connections are dialed as the CLI dials (verify.PaceDial) and come from one
// pool: the first two COPYs reuse a connection whose backend has long mapped the table's shared
// buffers, and verify db reads on another of the pool's (a second stream, where the server is on
// another machine, would open its own).
func BenchmarkVerifyDB(b *testing.B) {
	ctx := context.Background()
	_, url := testdb.New(b)
	db := pacedPool(b, url)
	loadBenchDB(b, db)
	conn, err := db.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	binaryCopy := verify.CopyQuery(1)
	textCopy := strings.TrimSuffix(binaryCopy, " (FORMAT binary)")
	copyTime := func(sql string) time.Duration {
		start := time.Now()
		if _, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, sql); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var verifyTime, binTime, textTime, freshTime time.Duration
	for b.Loop() {
		verifyTime += timeVerifyDB(b, db)
		binTime += copyTime(binaryCopy)
		textTime += copyTime(textCopy)
		freshTime += newConnCopy(b, db.Config().ConnConfig)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchEntries) / d.Seconds() }
	b.ReportMetric(rate(verifyTime), "entries/s")
	b.ReportMetric(rate(binTime), "copy-binary-entries/s")
	b.ReportMetric(rate(textTime), "copy-text-entries/s")
	b.ReportMetric(rate(verifyTime)/rate(binTime), "ratio-binary")
	b.ReportMetric(rate(verifyTime)/rate(textTime), "ratio-text")
	b.ReportMetric(rate(verifyTime)/rate(freshTime), "ratio-binary-new-conn")
}

// BenchmarkVerifyDBTLS is BenchmarkVerifyDB over TLS (sslmode=require, as managed servers make
// clients connect), on a cluster of its own: verify db against binary COPY on a new TLS
// connection, in the same run.
func BenchmarkVerifyDBTLS(b *testing.B) {
	_, url := testdb.NewTLS(b)
	db := pacedPool(b, url)
	loadBenchDB(b, db)
	var verifyTime, copyTime time.Duration
	for b.Loop() {
		verifyTime += timeVerifyDB(b, db)
		copyTime += newConnCopy(b, db.Config().ConnConfig)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchEntries) / d.Seconds() }
	b.ReportMetric(rate(verifyTime), "entries/s")
	b.ReportMetric(rate(copyTime), "copy-binary-entries/s")
	b.ReportMetric(rate(verifyTime)/rate(copyTime), "ratio-binary-new-conn")
}

// loadBenchDB loads the benchmarks' trail into db.
func loadBenchDB(b *testing.B, db *pgxpool.Pool) {
	ctx := context.Background()
	conn, err := db.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if err := verifytest.LoadDB(ctx, conn.Conn(), verifytest.Events(benchEntries, benchEntrySize)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE audit.events"); err != nil {
		b.Fatal(err)
	}
}

// timeVerifyDB times one verify db of the benchmarks' trail in db, which must verify intact.
func timeVerifyDB(b *testing.B, db *pgxpool.Pool) time.Duration {
	start := time.Now()
	rep, err := (&verify.Verifier{Workers: benchWorkers}).DB(context.Background(), db)
	d := time.Since(start)
	if err != nil || !rep.Intact() || rep.Entries != benchEntries {
		b.Fatalf("verify: %v %+v", err, rep)
	}
	return d
}

// newConnCopy times binary COPY of the trail on a new connection made with cfg (its setup not
// timed), as make bench reads: a new backend faults in each shared-buffer page it touches, which
// verify db's own connections pay too.
func newConnCopy(b *testing.B, cfg *pgx.ConnConfig) time.Duration {
	ctx := context.Background()
	c, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	start := time.Now()
	if _, err := c.PgConn().CopyTo(ctx, io.Discard, verify.CopyQuery(1)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// pacedPool opens a pool on url whose connections are dialed as the CLI dials its own
// (verify.PaceDial), closed at cleanup. COPY into io.Discard on them reads through the same
// 256 KiB buffer as verify db (the pacer waits only while verify db reads).
func pacedPool(b *testing.B, url string) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.DialFunc = verify.PaceDial(cfg.ConnConfig.DialFunc)
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	return db
}
