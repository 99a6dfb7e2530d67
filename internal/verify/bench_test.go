package verify_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/pace"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
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
// same run, reads the same rows with COPY into io.Discard through pgconn: verification is
// measured against the bare cost of reading. Each pair runs on like connections, because a new
// backend faults in every shared-buffer page it touches (about 14 µs each here: COPY on a new
// connection reads at three quarters of a warm one's speed) and one that has read the table
// before does not:
//   - warm: verify db, binary COPY and text COPY take turns on one connection that loaded the
//     trail (ratio-binary, ratio-text);
//   - new: verify db and binary COPY each on a connection of their own, made for the round and
//     not timed, as the CLI and make bench read (ratio-binary-new-conn).
//
// All connections are dialed as the CLI dials (pace.Dial); the pacer waits only while
// verify db reads. With the server on this machine verify db reads in one stream on 2 cores
// (verify's default), so each side reads on exactly the connection it is given.
func BenchmarkVerifyDB(b *testing.B) {
	ctx := context.Background()
	_, url := testdb.New(b)
	cfg := pacedConfig(b, url)
	conn := newConn(b, cfg)
	defer conn.Close(ctx)
	loadBenchDB(b, conn)
	binaryCopy := verify.CopyQuery(1)
	textCopy := strings.TrimSuffix(binaryCopy, " (FORMAT binary)")
	var verifyTime, binTime, textTime, newVerifyTime, newBinTime time.Duration
	for b.Loop() {
		verifyTime += timeVerifyDB(b, conn)
		binTime += timeCopy(b, conn, binaryCopy)
		textTime += timeCopy(b, conn, textCopy)
		newVerifyTime += newConnVerify(b, cfg)
		newBinTime += newConnCopy(b, cfg)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchEntries) / d.Seconds() }
	b.ReportMetric(rate(verifyTime), "entries/s")
	b.ReportMetric(rate(binTime), "copy-binary-entries/s")
	b.ReportMetric(rate(textTime), "copy-text-entries/s")
	b.ReportMetric(rate(newVerifyTime), "new-conn-entries/s")
	b.ReportMetric(rate(newBinTime), "new-conn-copy-binary-entries/s")
	b.ReportMetric(rate(verifyTime)/rate(binTime), "ratio-binary")
	b.ReportMetric(rate(verifyTime)/rate(textTime), "ratio-text")
	b.ReportMetric(rate(newVerifyTime)/rate(newBinTime), "ratio-binary-new-conn")
}

// BenchmarkVerifyDBTLS is BenchmarkVerifyDB's new-connection pair over TLS (sslmode=require, as
// managed servers make clients connect), on a cluster of its own: verify db and binary COPY, each
// on a new TLS connection, in the same run.
func BenchmarkVerifyDBTLS(b *testing.B) {
	ctx := context.Background()
	_, url := testdb.NewTLS(b)
	cfg := pacedConfig(b, url)
	conn := newConn(b, cfg)
	loadBenchDB(b, conn)
	conn.Close(ctx)
	var verifyTime, copyTime time.Duration
	for b.Loop() {
		verifyTime += newConnVerify(b, cfg)
		copyTime += newConnCopy(b, cfg)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchEntries) / d.Seconds() }
	b.ReportMetric(rate(verifyTime), "entries/s")
	b.ReportMetric(rate(copyTime), "copy-binary-entries/s")
	b.ReportMetric(rate(verifyTime)/rate(copyTime), "ratio-binary-new-conn")
}

// loadBenchDB loads the benchmarks' trail through conn and reads it once: the first read of
// freshly loaded rows costs the server half as much CPU again as later ones (570 ms against
// 350 ms for this trail, whichever statement reads first), which the first timed reader would
// pay alone.
func loadBenchDB(b *testing.B, conn *pgx.Conn) {
	ctx := context.Background()
	if err := verifytest.LoadDB(ctx, conn, verifytest.Events(benchEntries, benchEntrySize)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE audit.events"); err != nil {
		b.Fatal(err)
	}
	timeCopy(b, conn, verify.CopyQuery(1))
}

// timeVerifyDB times one verify db of the benchmarks' trail on conn, which must verify intact.
func timeVerifyDB(b *testing.B, conn *pgx.Conn) time.Duration {
	start := time.Now()
	rep, err := (&verify.Verifier{Workers: benchWorkers}).DB(context.Background(), conn)
	d := time.Since(start)
	if err != nil || !rep.Intact() || rep.Entries != benchEntries {
		b.Fatalf("verify: %v %+v", err, rep)
	}
	return d
}

// timeCopy times sql, a COPY TO STDOUT, into io.Discard on conn.
func timeCopy(b *testing.B, conn *pgx.Conn, sql string) time.Duration {
	start := time.Now()
	if _, err := conn.PgConn().CopyTo(context.Background(), io.Discard, sql); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// newConnVerify times verify db on a new connection made with cfg (its setup not timed).
func newConnVerify(b *testing.B, cfg *pgx.ConnConfig) time.Duration {
	conn := newConn(b, cfg)
	defer conn.Close(context.Background())
	return timeVerifyDB(b, conn)
}

// newConnCopy times binary COPY of the trail on a new connection made with cfg (its setup not
// timed).
func newConnCopy(b *testing.B, cfg *pgx.ConnConfig) time.Duration {
	conn := newConn(b, cfg)
	defer conn.Close(context.Background())
	return timeCopy(b, conn, verify.CopyQuery(1))
}

// newConn connects with cfg.
func newConn(b *testing.B, cfg *pgx.ConnConfig) *pgx.Conn {
	c, err := pgx.ConnectConfig(context.Background(), cfg.Copy())
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// pacedConfig parses url into a connection config dialed as the CLI dials its own
// (pace.Dial): COPY into io.Discard on such a connection reads through the same 256 KiB
// buffer as verify db.
func pacedConfig(b *testing.B, url string) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.DialFunc = pace.Dial(cfg.DialFunc)
	return cfg
}
