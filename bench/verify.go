package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// VerifyRun is one verification of the whole trail.
type VerifyRun struct {
	What    string  `json:"what"`
	Entries int64   `json:"entries"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"entries_per_second"`
	Share   float64 `json:"share_of_raw_sha256"`
	PeakRSS int64   `json:"peak_rss_bytes"`
	CPU     float64 `json:"cpu_seconds"`
	// ShareOfCopy is, for verify db, its entries/s over COPY's: the issue asks that database
	// verification be not slower than reading the rows with COPY. The median of Pairs.
	ShareOfCopy float64 `json:"share_of_copy,omitempty"`
	// Process is the command's wall time, where Seconds is the verification's own (from its
	// report's started_at to finished_at).
	Process float64 `json:"process_seconds,omitempty"`
	// ServerCPU is the CPU time the co-located S3 server used during the run (verify archive from
	// S3): it shares the client's cores.
	ServerCPU float64 `json:"server_cpu_seconds,omitempty"`
	// Pairs are the side-by-side ratios the share is the median of: each run's entries/s over
	// that of the run beside it (verify archive: a raw chaining run just before; verify db: a
	// COPY just before or after).
	Pairs []float64 `json:"side_by_side,omitempty"`
	// Unavailable says why the row could not be measured (e.g. the command does not exist yet).
	Unavailable string `json:"unavailable,omitempty"`
	Error       string `json:"error,omitempty"`
}

// VerifyResult is part 3.
type VerifyResult struct {
	Runs          []*VerifyRun `json:"runs"`
	MeanEntrySize float64      `json:"mean_entry_bytes"`
	Notes         []string     `json:"notes,omitempty"`
}

// verifyPairs is how many side-by-side pairs measure each share of part 3: on this shared
// machine a single pair's ratio swings by a fifth between runs minutes apart.
const verifyPairs = 3

// median returns the median of xs (the mean of the middle two for an even count), or 0.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// Rows of part 3.
const (
	VerifyRaw     = "raw Go SHA-256 chaining, same entry sizes, one core"
	VerifyCopy    = "COPY of the rows verify db reads, to /dev/null (binary, one stream)"
	VerifyDB      = "pgtrail verify db"
	VerifyArchive = "pgtrail verify archive"
)

func runVerify(ctx context.Context, cfg *Config, s *streamBench, entries int64) (*VerifyResult, error) {
	log := cfg.logger().With("part", PartVerify)
	res := &VerifyResult{}

	log.Info("reading the canonical entry sizes", "entries", entries)
	sizes, err := s.entrySizes(ctx)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, n := range sizes {
		total += int64(n)
	}
	if len(sizes) > 0 {
		res.MeanEntrySize = float64(total) / float64(len(sizes))
	}
	raw := &VerifyRun{What: VerifyRaw, Entries: int64(len(sizes))}
	res.Runs = append(res.Runs, raw)
	log.Info("raw SHA-256 chaining")
	// Best of three: the floor should not carry another tenant's burst.
	for range 3 {
		wall, cpu := rawChain(sizes)
		if raw.Seconds == 0 || wall.Seconds() < raw.Seconds {
			raw.Seconds, raw.CPU = wall.Seconds(), cpu.Seconds()
		}
	}
	if raw.Seconds > 0 {
		raw.PerSec = float64(raw.Entries) / raw.Seconds
	}

	// COPY and verify db take turns in side-by-side pairs, each first in every other pair (COPY
	// verify, verify COPY, COPY verify), so that drift on this shared machine favours neither.
	// Each row shows its faster run; verify db's share of COPY is the median of the pairs'
	// ratios, each of two runs a few seconds apart.
	log.Info("COPY and verify db", "pairs", verifyPairs)
	cp := &VerifyRun{What: VerifyCopy}
	vdb := &VerifyRun{What: VerifyDB}
	res.Runs = append(res.Runs, cp, vdb)
	copyOnce := func() *VerifyRun {
		var run VerifyRun
		if err := s.copyRows(ctx, &run); err != nil {
			if cp.PerSec == 0 {
				cp.Error = err.Error()
			}
			return nil
		}
		if cp.PerSec == 0 || run.Seconds < cp.Seconds {
			cp.Entries, cp.Seconds, cp.PerSec, cp.CPU, cp.Error = run.Entries, run.Seconds, run.PerSec, run.CPU, ""
		}
		return &run
	}
	verifyOnce := func() *VerifyRun {
		run := VerifyRun{What: VerifyDB}
		if err := s.verifyDB(ctx, &run); err != nil {
			if vdb.PerSec == 0 {
				vdb.Error = err.Error()
			}
			return nil
		}
		if vdb.PerSec == 0 || run.Seconds < vdb.Seconds {
			*vdb = run
		}
		return &run
	}
	var pairs []float64
	for i := range verifyPairs {
		var c, v *VerifyRun
		if i%2 == 0 {
			c, v = copyOnce(), verifyOnce()
		} else {
			v, c = verifyOnce(), copyOnce()
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if c != nil && v != nil && c.PerSec > 0 {
			pairs = append(pairs, v.PerSec/c.PerSec)
		}
	}
	vdb.Pairs, vdb.ShareOfCopy = pairs, median(pairs)

	available, why := s.archiveVerifyAvailable(ctx)
	for _, tg := range s.live {
		run := &VerifyRun{What: VerifyArchive + " (" + tg.name + ")", Entries: entries}
		res.Runs = append(res.Runs, run)
		if !available {
			run.Unavailable = why
			continue
		}
		// Each run follows a raw chaining run, side by side: the row shows the fastest run (as
		// the raw row its fastest), and its share of raw is the median of the pairs' ratios.
		log.Info("verify archive", "sink", tg.name, "pairs", verifyPairs)
		var pairs []float64
		for range verifyPairs {
			rawWall, _ := rawChain(sizes)
			try := &VerifyRun{What: run.What, Entries: entries}
			serverCPU := s.serverCPU(tg)
			err := s.verifyArchive(ctx, tg, try)
			try.ServerCPU = serverCPU().Seconds()
			if err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				run.Error = err.Error()
				break
			}
			if try.Unavailable != "" {
				run.Unavailable = try.Unavailable
				break
			}
			if rawWall > 0 && try.PerSec > 0 {
				pairs = append(pairs, try.PerSec/(float64(len(sizes))/rawWall.Seconds()))
			}
			if run.Seconds == 0 || try.Seconds < run.Seconds {
				*run = *try
			}
		}
		run.Pairs, run.Share = pairs, median(pairs)
	}
	if !available {
		res.Notes = append(res.Notes, "pgtrail verify archive: "+why)
	}
	var cpu []string
	for _, r := range res.Runs {
		if r != raw && r != cp && r.Share == 0 && raw.PerSec > 0 && r.PerSec > 0 {
			r.Share = r.PerSec / raw.PerSec // verify db: no pairs with the raw row
		}
		if r != cp && r.CPU > 0 && r.Entries > 0 {
			cpu = append(cpu, fmt.Sprintf("%s %.2f µs", r.What, r.CPU/float64(r.Entries)*1e6))
		}
	}
	if len(cpu) > 0 {
		// Less disturbed by other tenants than the wall time: what the runs would give on idle cores.
		res.Notes = append(res.Notes, fmt.Sprintf("CPU per entry (%d cores): %s", runtime.NumCPU(), strings.Join(cpu, "; ")))
	}
	return res, nil
}

// serverCPU starts counting the CPU time of tg's server, where the harness runs it (the S3
// server), and returns the function that reads the count: 0 for a directory or an unreadable
// server process.
func (s *streamBench) serverCPU(tg *target) func() time.Duration {
	pid := 0
	if tg.name == "s3" && s.s3 != nil {
		pid = s.s3.PID()
	}
	none := func() time.Duration { return 0 }
	if pid == 0 {
		return none
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return none
	}
	return func() time.Duration {
		cpu1, err := procCPU(pid)
		if err != nil {
			return 0
		}
		return cpu1 - cpu0
	}
}

// entrySizes returns the length of every entry's canonical encoding, in chain order.
func (s *streamBench) entrySizes(ctx context.Context) ([]int, error) {
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT octet_length(audit.canonical(e)) FROM audit.events e ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("read entry sizes: %w", err)
	}
	defer rows.Close()
	var sizes []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("read entry sizes: %w", err)
		}
		sizes = append(sizes, n)
	}
	return sizes, rows.Err()
}

// rawChain computes h = SHA-256(h ‖ entry) over entries of the given sizes on one goroutine,
// the floor of what any verifier must do, and returns the wall and CPU time it took.
func rawChain(sizes []int) (time.Duration, time.Duration) {
	largest := 0
	for _, n := range sizes {
		largest = max(largest, n)
	}
	buf := make([]byte, largest)
	rand.Read(buf)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	start := time.Now()
	h := pgtrail.GenesisHash
	var sum [sha256.Size]byte
	for _, n := range sizes {
		d := sha256.New()
		d.Write(h)
		d.Write(buf[:n])
		h = d.Sum(sum[:0])
	}
	return time.Since(start), threadCPU() - cpu0
}

// threadCPU is the calling thread's CPU time (the goroutine is locked to it).
func threadCPU() time.Duration {
	data, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		return 0
	}
	d, _ := parseProcStatCPU(string(data))
	return d
}

// copyRows reads the rows verify db reads, with the statement it reads them with (in one stream,
// where verify db uses verify.DefaultDBStreams), into io.Discard: the speed of reading alone.
// CPU is the client's, which only counts bytes.
func (s *streamBench) copyRows(ctx context.Context, run *VerifyRun) error {
	conn, err := s.cl.connect(ctx, streamDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var cpu0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, verify.CopyQuery(1))
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("copy audit.events: %w", err)
	}
	var cpu1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
	run.Entries, run.Seconds = tag.RowsAffected(), wall.Seconds()
	run.CPU = time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano()).Seconds()
	if run.Seconds > 0 {
		run.PerSec = float64(run.Entries) / run.Seconds
	}
	return nil
}

func (s *streamBench) verifyDB(ctx context.Context, run *VerifyRun) error {
	logPath := filepath.Join(s.dir, "verify-db.log")
	var out strings.Builder
	p, err := startProc(ctx, logPath, &out, s.env, s.t.pgtrail, "verify", "db", "--json")
	if err != nil {
		return err
	}
	pr, err := p.wait()
	if err != nil {
		return fmt.Errorf("%w: %s", err, lastLines(out.String(), 2))
	}
	return run.setFromReport(pr, "db", out.String())
}

// setFromReport sets the run from a `pgtrail verify SCOPE --json` process and its output: the
// entries the run verified (an archive may hold fewer than the trail: the file stream stops
// before the S3 lag run adds its entries), and an error unless the report says intact.
func (r *VerifyRun) setFromReport(pr procResult, scope, out string) error {
	var rep struct {
		Entries    int64     `json:"entries"`
		Intact     bool      `json:"intact"`
		StartedAt  time.Time `json:"started_at"`
		FinishedAt time.Time `json:"finished_at"`
	}
	if err := json.Unmarshal([]byte(lastLines(out, 1)), &rep); err != nil {
		return fmt.Errorf("parse verify %s --json: %w", scope, err)
	}
	if !rep.Intact {
		return fmt.Errorf("verify %s reports damage: %s", scope, lastLines(out, 1))
	}
	r.Entries = rep.Entries
	r.setFrom(pr)
	// The verification's own time, as the raw and COPY rows time only their work: the process's
	// start, its connection and the audit event it records after the report (≈ 60 ms here,
	// 8% of a file archive row) are a fixed cost, not a rate.
	if d := rep.FinishedAt.Sub(rep.StartedAt); d > 0 && !rep.StartedAt.IsZero() {
		r.Process, r.Seconds = r.Seconds, d.Seconds()
		r.PerSec = float64(r.Entries) / r.Seconds
	}
	return nil
}

func (r *VerifyRun) setFrom(pr procResult) {
	r.Seconds, r.PeakRSS, r.CPU = pr.Wall.Seconds(), pr.PeakRSS, pr.CPU.Seconds()
	if r.Seconds > 0 {
		r.PerSec = float64(r.Entries) / r.Seconds
	}
}

// archiveVerifyAvailable tells whether this pgtrail has `verify archive` (being written while
// this harness was): its verify usage must mention it.
func (s *streamBench) archiveVerifyAvailable(ctx context.Context) (bool, string) {
	out, _ := runCapture(ctx, nil, s.t.pgtrail, "verify", "--help")
	if strings.Contains(out, "archive") {
		return true, ""
	}
	usage := "no usage printed"
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Usage:") {
			usage = strings.TrimSpace(line)
			break
		}
	}
	return false, "not available: this pgtrail has no `verify archive` (" + usage + ")"
}

func (s *streamBench) verifyArchive(ctx context.Context, tg *target, run *VerifyRun) error {
	logPath := filepath.Join(s.dir, "verify-archive-"+tg.name+".log")
	var out strings.Builder
	args := append([]string{"verify", "archive", tg.url, "--public-key", s.key + ".pub", "--json"}, tg.args...)
	// --retention is a stream flag, not a verify flag.
	args = dropFlag(args, "--retention")
	p, err := startProc(ctx, logPath, &out, tg.env, s.t.pgtrail, args...)
	if err != nil {
		return err
	}
	pr, err := p.wait()
	if err != nil {
		text := out.String()
		if strings.Contains(text, "expected: verify db") || strings.Contains(text, "flag provided but not defined") {
			run.Unavailable = "not available: " + lastLines(text, 1)
			return nil
		}
		return fmt.Errorf("%w: %s", err, lastLines(text, 2))
	}
	return run.setFromReport(pr, "archive", out.String())
}

// dropFlag removes "--name value" from args.
func dropFlag(args []string, name string) []string {
	out := args[:0:0]
	for i := 0; i < len(args); i++ {
		if args[i] == name {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
