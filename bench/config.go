package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
)

// Parts of the benchmark, in the order they run.
const (
	PartWrite  = "write"
	PartStream = "stream"
	PartVerify = "verify"
)

// AllParts lists every part in run order.
var AllParts = []string{PartWrite, PartStream, PartVerify}

// Config says what to run and how big. Full and Smoke return the two presets; flags override
// single fields.
type Config struct {
	// Root is the module root: the pgtrail binary is built there and results are written under it.
	Root string
	// ResultsDir receives <timestamp>.md, <timestamp>.json and latest.md.
	ResultsDir string
	// Pgtrail, when set, is the binary to drive; otherwise ./cmd/pgtrail is built into .cache/bin.
	Pgtrail string
	// Label names the run in the results (full or smoke).
	Label string
	// Parts to run, from AllParts. The verify part needs the stream part's trail.
	Parts []string
	// Keep leaves the work directory (clusters, archives, logs) in place.
	Keep bool
	// Smoke relaxes what must be available: pgaudit and the S3 server are skipped when missing.
	Smoke bool

	// Write overhead (part 1).
	Clients  []int         // pgbench client counts
	Duration time.Duration // measured pgbench time per scenario and client count, over all rounds
	Rounds   int           // the scenarios take turns this many times, Duration/Rounds each
	Warmup   time.Duration // unmeasured pgbench run before each measured round; 0 for none
	Accounts int           // rows in accounts
	// Scenarios restricts part 1 to these scenario names (empty: every one but the diagnostics).
	Scenarios []string
	// Diagnostics adds, at the highest client count only, the scenarios that take pgtrail apart
	// (no sealer; no secondary indexes), unless Scenarios names what to run.
	Diagnostics bool
	// InstallPgaudit tries apt-get when pgaudit is missing (root only).
	InstallPgaudit bool

	// Stream (part 2).
	Backlogs    []int         // backlog sizes in events, the largest last (peak RSS is compared)
	LagRate     int           // events per second for the lag measurement
	LagDuration time.Duration // how long that load runs
	// LagModes are the capture modes the lag is measured in, each on every sink: the tables
	// switch with `pgtrail enable --mode` between them.
	LagModes []string
	// LagStreamArgs are extra `pgtrail stream` flags for the lag runs (-v, another --batch-age).
	LagStreamArgs []string
	ChunkRows     int // rows per transaction when generating a backlog

	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Full is the configuration of make bench.
func Full() Config {
	return Config{
		Label:          "full",
		Parts:          AllParts,
		Clients:        []int{1, 4, 8},
		Duration:       30 * time.Second,
		Rounds:         3,
		Warmup:         3 * time.Second,
		Accounts:       100_000,
		InstallPgaudit: true,
		Diagnostics:    true,
		Backlogs:       []int{250_000, 1_000_000},
		LagRate:        5000,
		LagDuration:    30 * time.Second,
		LagModes:       []string{"trigger", "wal"},
		ChunkRows:      100_000,
	}
}

// Smoke is the configuration of make bench-smoke: every part, tiny sizes, a few seconds each.
func Smoke() Config {
	return Config{
		Label:       "smoke",
		Parts:       AllParts,
		Smoke:       true,
		Clients:     []int{2},
		Duration:    2 * time.Second,
		Rounds:      1,
		Accounts:    1000,
		Backlogs:    []int{2000, 6000},
		LagRate:     500,
		LagDuration: 3 * time.Second,
		LagModes:    []string{"trigger", "wal"},
		ChunkRows:   1000,
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	if c.Root == "" {
		return errors.New("Root: empty")
	}
	if c.ResultsDir == "" {
		return errors.New("ResultsDir: empty")
	}
	if len(c.Parts) == 0 {
		return errors.New("Parts: none")
	}
	for _, p := range c.Parts {
		if !slices.Contains(AllParts, p) {
			return fmt.Errorf("Parts: unknown part %q (want %v)", p, AllParts)
		}
	}
	if slices.Contains(c.Parts, PartVerify) && !slices.Contains(c.Parts, PartStream) {
		return errors.New("Parts: verify checks the trail the stream part builds; add stream")
	}
	if slices.Contains(c.Parts, PartWrite) {
		if len(c.Clients) == 0 {
			return errors.New("Clients: none")
		}
		for _, n := range c.Clients {
			if n < 1 {
				return fmt.Errorf("Clients: %d is not positive", n)
			}
		}
		if c.Rounds < 1 {
			return fmt.Errorf("Rounds: %d is not positive", c.Rounds)
		}
		if c.Duration < time.Duration(c.Rounds)*time.Second {
			return fmt.Errorf("Duration: %s is under 1s per round (pgbench -T counts whole seconds)", c.Duration)
		}
		if c.Warmup != 0 && c.Warmup < time.Second {
			return fmt.Errorf("Warmup: %s is under 1s and not 0", c.Warmup)
		}
		for _, s := range c.Scenarios {
			if scenarioByName(s) == nil {
				return fmt.Errorf("Scenarios: unknown scenario %q", s)
			}
		}
	}
	if c.Accounts < 10 {
		return fmt.Errorf("Accounts: %d is under 10", c.Accounts)
	}
	if slices.Contains(c.Parts, PartStream) {
		if len(c.Backlogs) == 0 {
			return errors.New("Backlogs: none")
		}
		for _, n := range c.Backlogs {
			if n < 2 {
				return fmt.Errorf("Backlogs: %d is under 2", n)
			}
		}
		if c.LagRate < 10 {
			return fmt.Errorf("LagRate: %d events/s is under 10", c.LagRate)
		}
		if c.LagDuration < time.Second {
			return fmt.Errorf("LagDuration: %s is under 1s", c.LagDuration)
		}
		if len(c.LagModes) == 0 {
			return errors.New("LagModes: none")
		}
		for _, m := range c.LagModes {
			if m != "trigger" && m != "wal" {
				return fmt.Errorf("LagModes: unknown capture mode %q (want trigger or wal)", m)
			}
		}
		if c.ChunkRows < 1 {
			return fmt.Errorf("ChunkRows: %d is not positive", c.ChunkRows)
		}
	}
	return nil
}

func (c *Config) has(part string) bool { return slices.Contains(c.Parts, part) }

func (c *Config) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c.Log
}
