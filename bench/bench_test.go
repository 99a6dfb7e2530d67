package bench

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"Empty", nil, 99, 0},
		{"One", []float64{7}, 99, 7},
		{"Median", []float64{5, 1, 3, 2, 4}, 50, 3},
		{"P99OfHundred", hundred(), 99, 99},
		{"Max", []float64{3, 9, 1}, 100, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.xs, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
		})
	}
}

func hundred() []float64 {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted
	}
	return xs
}

const sampleMetrics = `# HELP pgtrail_stream_events_total Audit events archived.
# TYPE pgtrail_stream_events_total counter
pgtrail_stream_events_total 1.25e+06
pgtrail_stream_errors_total{where="archive"} 2
# TYPE pgtrail_stream_commit_to_durable_seconds histogram
pgtrail_stream_commit_to_durable_seconds_bucket{le="0.5"} 0
pgtrail_stream_commit_to_durable_seconds_bucket{le="1"} 50
pgtrail_stream_commit_to_durable_seconds_bucket{le="2"} 100
pgtrail_stream_commit_to_durable_seconds_bucket{le="+Inf"} 100
pgtrail_stream_commit_to_durable_seconds_sum 120
pgtrail_stream_commit_to_durable_seconds_count 100
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(sampleMetrics)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.values["pgtrail_stream_events_total"]; got != 1.25e6 {
		t.Errorf("events_total = %v, want 1.25e6", got)
	}
	if _, ok := m.values["pgtrail_stream_errors_total"]; ok {
		t.Errorf("a labelled counter was taken as an unlabelled value")
	}
	h := m.histograms["pgtrail_stream_commit_to_durable_seconds"]
	if h == nil {
		t.Fatal("histogram not parsed")
	}
	if h.count != 100 || h.sum != 120 || len(h.buckets) != 4 {
		t.Errorf("histogram = %+v, want count 100, sum 120, 4 buckets", *h)
	}
	// 50 observations in (0.5, 1], 50 in (1, 2]: the median is the top of the first, p99 near 2.
	if got := h.quantile(0.5); got != 1 {
		t.Errorf("p50 = %v, want 1", got)
	}
	if got := h.quantile(0.99); math.Abs(got-1.98) > 1e-9 {
		t.Errorf("p99 = %v, want 1.98", got)
	}
}

func TestHistogram_QuantileInInfBucket(t *testing.T) {
	h := histogram{count: 10, buckets: []bucket{{le: 1, count: 5}, {le: math.Inf(1), count: 10}}}
	if got := h.quantile(0.99); got != 1 {
		t.Errorf("quantile in +Inf bucket = %v, want the highest finite bound 1", got)
	}
	if got := (histogram{}).quantile(0.5); got != 0 {
		t.Errorf("empty histogram quantile = %v, want 0", got)
	}
}

const samplePgbench = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/w.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 43110
number of failed transactions: 3 (0.007%)
latency average = 1.857 ms
initial connection time = 12.681 ms
tps = 4308.286211 (without initial connection time)
statement latencies in milliseconds and failures:
         0.002           0  \set aid random(1, 100000)
         0.407           0  BEGIN;
         0.714           0  UPDATE accounts SET balance = balance + :delta WHERE id = :aid;
         0.617           0  INSERT INTO payments (account_id) VALUES (:aid);
         2.971           3  END;
`

func TestParsePgbenchOutput(t *testing.T) {
	r, err := parsePgbenchOutput(samplePgbench)
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 4308.286211 || r.Transactions != 43110 || r.Failed != 3 || r.MeanMs != 1.857 {
		t.Errorf("summary = %+v", r)
	}
	want := map[string]float64{"BEGIN": 0.407, "UPDATE": 0.714, "INSERT": 0.617, "END": 2.971}
	for k, v := range want {
		if r.StmtMs[k] != v {
			t.Errorf("StmtMs[%s] = %v, want %v (all: %v)", k, r.StmtMs[k], v, r.StmtMs)
		}
	}
	if _, err := parsePgbenchOutput("pgbench: error: connection refused\n"); err == nil {
		t.Error("output without a tps line parsed without error")
	}
}

func TestAppendLogLatencies(t *testing.T) {
	log := "0 1 17270 0 1795616848 10278\n1 1 failed 0 1795616848 10300\n1 2 2560 0 1795616848 11849 12\n"
	lat, err := appendLogLatencies(nil, []byte(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 2 || lat[0] != 17.27 || lat[1] != 2.56 {
		t.Errorf("latencies = %v, want [17.27 2.56] (failed transaction left out)", lat)
	}
	if _, err := appendLogLatencies(nil, []byte("garbage\n")); err == nil {
		t.Error("a malformed line parsed without error")
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// Field 2 may contain spaces and parentheses; utime=250, stime=50 ticks.
	stat := "1234 (postgres: a) b) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0"
	got, err := parseProcStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Errorf("cpu = %v, want 3s", got)
	}
}

func TestParseCPULine(t *testing.T) {
	a, err := parseCPULine("cpu  100 0 100 700 100 0 0 0 0 0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseCPULine("cpu  200 0 200 800 100 0 0 0 50 0")
	if err != nil {
		t.Fatal(err)
	}
	// Busy grew by 200 of 300 ticks; guest time is already in user and must not count twice.
	if got := busyShare(a, b); math.Abs(got-2.0/3) > 1e-9 {
		t.Errorf("busy share = %v, want 2/3", got)
	}
}

func TestComputeShares(t *testing.T) {
	runs := []*WriteRun{
		{Scenario: ScenarioNone, Clients: 8, TPS: 8500},
		{Scenario: ScenarioPgtrail, Clients: 8, TPS: 6800},
		{Scenario: ScenarioPlain, Clients: 1, TPS: 100}, // no reference at 1 client
	}
	computeShares(runs)
	if got := runs[1].Share; math.Abs(got-0.8) > 1e-9 {
		t.Errorf("pgtrail share = %v, want 0.8", got)
	}
	if runs[2].Share != 0 {
		t.Errorf("share without a reference = %v, want 0", runs[2].Share)
	}
}

func TestWriteRun_Finish(t *testing.T) {
	r := &WriteRun{Transactions: 3000, seconds: 10, walBytes: 3e6, busySum: 5, sealerCPU: 2,
		latencies: []float64{3, 1, 2}}
	r.finish()
	if r.TPS != 300 || r.WALPerTx != 1000 || r.MachineBusy != 0.5 || r.SealerCores != 0.2 || r.MeanMs != 2 || r.P99Ms != 3 {
		t.Errorf("finish: %+v", r)
	}
}

func TestChecks_WriteTargets(t *testing.T) {
	r := &Result{Config: ConfigSummary{Clients: []int{1, 8}}, Write: &WriteResult{Runs: []*WriteRun{
		{Scenario: ScenarioPlain, Clients: 1, TPS: 1000},
		{Scenario: ScenarioPgtrail, Clients: 1, TPS: 900},
		{Scenario: ScenarioPlain, Clients: 8, TPS: 6000},
		{Scenario: ScenarioPgtrail, Clients: 8, TPS: 7000, Share: 0.875},
		{Scenario: ScenarioPgtrailWALHot, Clients: 8, TPS: 6900, Share: 0.86},
		{Scenario: ScenarioPgtrailWAL, Clients: 8, TPS: 3300, Share: 0.41},
	}}}
	checks := Checks(r)
	want := []struct{ target, met, measured string }{
		{"pgtrail ≥ 85% of no-audit TPS at 8 clients", "met", "88%"},
		{"WAL mode hot path ≥ 85% of no-audit TPS at 8 clients", "met", "86%"},
		{"WAL mode whole pipeline ≥ 70% of no-audit TPS at 8 clients", "MISSED", "41%"},
		{"pgtrail never below the plain trigger", "MISSED", "1 clients"},
	}
	if len(checks) != len(want) {
		t.Fatalf("checks = %+v, want %d", checks, len(want))
	}
	for i, w := range want {
		if c := checks[i]; c.Target != w.target || c.Met != w.met || !strings.Contains(c.Measured, w.measured) {
			t.Errorf("check %d = %+v, want %s %s (%s)", i, c, w.target, w.met, w.measured)
		}
	}
}

func TestIncomplete(t *testing.T) {
	r := &Result{
		Write: &WriteResult{Runs: []*WriteRun{
			{Scenario: ScenarioPgaudit, Clients: 2, Skipped: "not installed"},
			{Scenario: ScenarioNone, Clients: 2, TPS: 100, MeanMs: 1, P99Ms: 2, WALPerTx: 400, Share: 1},
			{Scenario: ScenarioPgtrail, Clients: 2, TPS: 100},
		}},
		Verify: &VerifyResult{Runs: []*VerifyRun{{What: VerifyArchive + " (file)", Unavailable: "not yet"}}},
	}
	got := Incomplete(r)
	if len(got) != 1 || !strings.Contains(got[0], "pgtrail@2") {
		t.Errorf("Incomplete = %q, want only the pgtrail run without latency", got)
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 2: "2.0", 1234567: "1,234,567", 999.6: "1,000", -4321: "-4,321"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"NoClients", func(c *Config) { c.Clients = nil }, "Clients"},
		{"ShortDuration", func(c *Config) { c.Duration = time.Millisecond }, "Duration"},
		{"UnknownScenario", func(c *Config) { c.Scenarios = []string{"magic"} }, "Scenarios"},
		{"UnknownPart", func(c *Config) { c.Parts = []string{"fly"} }, "Parts"},
		{"VerifyWithoutStream", func(c *Config) { c.Parts = []string{PartVerify} }, "Parts"},
		{"NoBacklog", func(c *Config) { c.Backlogs = nil }, "Backlogs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Smoke()
			c.Root, c.ResultsDir = "/x", "/x/r"
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.field) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	for _, c := range []Config{Full(), Smoke()} {
		c.Root, c.ResultsDir = "/x", "/x/r"
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s: %v", c.Label, err)
		}
	}
}

// TestMarkdown_Title: a run of some parts only says which in its title, so that its file is not
// taken for a full run's.
func TestMarkdown_Title(t *testing.T) {
	cases := []struct {
		label string
		parts []string
		want  string
	}{
		{"full", AllParts, "# pgtrail benchmark (full run)\n"},
		{"full", nil, "# pgtrail benchmark (full run)\n"},
		{"full", []string{PartStream, PartVerify}, "# pgtrail benchmark (full run, parts stream, verify only)\n"},
		{"smoke", []string{PartWrite}, "# pgtrail benchmark (smoke run, parts write only)\n"},
	}
	for _, c := range cases {
		md := Markdown(&Result{Label: c.label, Config: ConfigSummary{Parts: c.parts}})
		if !strings.HasPrefix(md, c.want) {
			t.Errorf("%s %v: title %q, want %q", c.label, c.parts, strings.SplitN(md, "\n", 2)[0], c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{0.5}, 0.5},
		{[]float64{0.9, 0.3, 0.6}, 0.6},
		{[]float64{0.4, 0.1, 0.8, 0.6}, 0.5},
	}
	for _, c := range cases {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want || !slices.Equal(in, c.in) {
			t.Errorf("median(%v) = %v (input now %v), want %v and the input unchanged", in, got, c.in, c.want)
		}
	}
}

// TestVerifyShares_SideBySide: the verify checks judge the shares (runVerify sets each to the
// median of its side-by-side pairs) and show the pairs beside them, as the verification table
// does, where an S3 row also shows its server's CPU.
func TestVerifyShares_SideBySide(t *testing.T) {
	r := &Result{Verify: &VerifyResult{Runs: []*VerifyRun{
		{What: VerifyRaw, Entries: 10, Seconds: 1, PerSec: 10},
		{What: VerifyCopy, Entries: 10, Seconds: 1, PerSec: 10},
		{What: VerifyDB, Entries: 10, Seconds: 1, PerSec: 10, ShareOfCopy: 0.98, Pairs: []float64{1.05, 0.98, 0.9}},
		{What: VerifyArchive + " (file)", Entries: 10, Seconds: 1, PerSec: 6, Share: 0.55, Pairs: []float64{0.55, 0.6, 0.45}},
		{What: VerifyArchive + " (s3)", Entries: 10, Seconds: 1, PerSec: 4, Share: 0.4, Process: 1.3, ServerCPU: 0.25, Pairs: []float64{0.4, 0.38, 0.41}},
	}}}
	want := map[string]Check{
		VerifyDB + " ≥ 100% of COPY of the same rows":  {Measured: "98% (median of 105% / 98% / 90%)", Met: "MISSED"},
		VerifyArchive + " (file) ≥ 50% of raw SHA-256": {Measured: "55% (median of 55% / 60% / 45%)", Met: "met"},
	}
	for _, c := range Checks(r) {
		if w, ok := want[c.Target]; ok {
			if c.Met != w.Met || c.Measured != w.Measured {
				t.Errorf("%s: %+v, want %+v", c.Target, c, w)
			}
			delete(want, c.Target)
		}
	}
	if len(want) > 0 {
		t.Errorf("checks missing: %v", want)
	}
	md := Markdown(r)
	for _, s := range []string{"side by side: 105% / 98% / 90%", "side by side: 55% / 60% / 45%", "3 pairs each",
		"command 1.30 s; S3 server CPU 0.25 s; side by side: 40% / 38% / 41%"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
}

// TestVerifyRun_SetFromReport: a verify row is timed from its report's started_at to finished_at,
// the command's wall time kept beside it; a report without the times falls back to the wall time,
// and a damaged trail is an error.
func TestVerifyRun_SetFromReport(t *testing.T) {
	pr := procResult{Wall: 1500 * time.Millisecond, CPU: 2 * time.Second, PeakRSS: 1 << 20}
	cases := []struct {
		name          string
		out           string
		seconds, proc float64
		wantErr       bool
	}{
		{"timed", `{"entries":1000,"intact":true,"started_at":"2026-12-06T10:00:00Z","finished_at":"2026-12-06T10:00:01.25Z"}`, 1.25, 1.5, false},
		{"no times", `{"entries":1000,"intact":true}`, 1.5, 0, false},
		{"damaged", `{"entries":1000,"intact":false}`, 0, 0, true},
	}
	for _, c := range cases {
		var r VerifyRun
		err := r.setFromReport(pr, "db", "progress\n"+c.out+"\n")
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: err %v, want error %v", c.name, err, c.wantErr)
		}
		if c.wantErr {
			continue
		}
		if r.Seconds != c.seconds || r.Process != c.proc || r.Entries != 1000 || r.PerSec != 1000/c.seconds || r.CPU != 2 {
			t.Errorf("%s: %+v, want seconds %v, command %v", c.name, r, c.seconds, c.proc)
		}
	}
}
