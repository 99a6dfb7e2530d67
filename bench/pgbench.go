package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// pgbenchResult is what one pgbench run measured.
type pgbenchResult struct {
	TPS          float64            // pgbench's own figure, without connection time
	Transactions int64              // completed in the measured duration
	Failed       int64              // failed transactions
	MeanMs       float64            // from the per-transaction log
	P99Ms        float64            // from the per-transaction log
	StmtMs       map[string]float64 // mean latency per statement (BEGIN, UPDATE, INSERT, END)
	Aborted      bool               // a client aborted: pgbench exited non-zero
	latencies    []float64          // ms, from the per-transaction log
}

// pgbenchArgs are the arguments of one run: no vacuum (the harness prepares the tables),
// prepared statements, per-statement latencies, and, when logPrefix is set, per-transaction logs.
func pgbenchArgs(clients int, d time.Duration, script, logPrefix string) []string {
	threads := min(clients, runtime.NumCPU())
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
		"-T", strconv.Itoa(int(d.Round(time.Second) / time.Second)), "-r", "-f", script}
	if logPrefix != "" {
		args = append(args, "-l", "--log-prefix", logPrefix)
	}
	return args
}

// runPgbench runs pgbench against url and parses its summary and, with logPrefix, its logs.
func runPgbench(ctx context.Context, bin, url string, args []string, logPrefix string, out io.Writer) (*pgbenchResult, error) {
	var buf bytes.Buffer
	w := io.Writer(&buf)
	if out != nil {
		w = io.MultiWriter(&buf, out)
	}
	p, err := startProc(ctx, "", w, os.Environ(), bin, append(args, url)...)
	if err != nil {
		return nil, err
	}
	_, werr := p.wait()
	res, perr := parsePgbenchOutput(buf.String())
	if perr != nil {
		if werr != nil {
			return nil, fmt.Errorf("%w: %s", werr, lastLines(buf.String(), 3))
		}
		return nil, perr
	}
	// pgbench exits 2 when a client aborted; the summary is still printed.
	res.Aborted = werr != nil
	if logPrefix != "" {
		lat, err := readPgbenchLogs(logPrefix)
		if err != nil {
			return nil, err
		}
		res.MeanMs = mean(lat)
		res.P99Ms = percentile(lat, 99)
		res.latencies = lat
		// The logs are read; on a long run they are large.
		if files, err := filepath.Glob(logPrefix + ".*"); err == nil {
			for _, f := range files {
				os.Remove(f)
			}
		}
	}
	return res, nil
}

var (
	tpsRE       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	processedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRE    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	latencyRE   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// parsePgbenchOutput reads pgbench's summary: TPS, transaction counts, mean latency, and the
// per-statement latencies of -r.
func parsePgbenchOutput(out string) (*pgbenchResult, error) {
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("pgbench printed no tps line: %s", lastLines(out, 3))
	}
	res := &pgbenchResult{StmtMs: map[string]float64{}}
	res.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := processedRE.FindStringSubmatch(out); m != nil {
		res.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := failedRE.FindStringSubmatch(out); m != nil {
		res.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := latencyRE.FindStringSubmatch(out); m != nil {
		res.MeanMs, _ = strconv.ParseFloat(m[1], 64)
	}
	_, stmts, ok := strings.Cut(out, "statement latencies in milliseconds")
	if ok {
		sc := bufio.NewScanner(strings.NewReader(stmts))
		sc.Scan() // rest of the heading line
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				break
			}
			ms, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				break
			}
			// With failure counts the second column is a number too.
			cmd := f[1:]
			if len(cmd) > 1 {
				if _, err := strconv.Atoi(cmd[0]); err == nil {
					cmd = cmd[1:]
				}
			}
			if strings.HasPrefix(cmd[0], `\`) {
				continue
			}
			res.StmtMs[strings.TrimSuffix(strings.ToUpper(cmd[0]), ";")] = ms
		}
	}
	return res, nil
}

// readPgbenchLogs reads the per-transaction logs of a run (prefix.<pid>, prefix.<pid>.<thread>)
// and returns the latencies of the completed transactions in milliseconds.
func readPgbenchLogs(prefix string) ([]float64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, fmt.Errorf("find pgbench logs: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no pgbench logs at %s.*", prefix)
	}
	var lat []float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read pgbench log: %w", err)
		}
		lat, err = appendLogLatencies(lat, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return lat, nil
}

// appendLogLatencies parses per-transaction log lines "client_id transaction_no time script_no
// time_epoch time_us [schedule_lag]", time in microseconds; failed or skipped transactions log a
// word instead of a time and are left out.
func appendLogLatencies(lat []float64, data []byte) ([]float64, error) {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 3 {
			return lat, fmt.Errorf("bad log line %q", line)
		}
		us, err := strconv.ParseInt(string(f[2]), 10, 64)
		if err != nil {
			continue // "failed" or "skipped"
		}
		lat = append(lat, float64(us)/1000)
	}
	return lat, nil
}
