package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Result is everything one run measured.
type Result struct {
	Label    string        `json:"label"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Machine  Machine       `json:"machine"`
	Config   ConfigSummary `json:"config"`
	Write    *WriteResult  `json:"write,omitempty"`
	Stream   *StreamResult `json:"stream,omitempty"`
	Verify   *VerifyResult `json:"verify,omitempty"`
	Errors   []string      `json:"errors,omitempty"`
}

// ConfigSummary is the part of Config the results depend on.
type ConfigSummary struct {
	Clients     []int    `json:"clients"`
	DurationS   float64  `json:"duration_s"`
	Rounds      int      `json:"rounds"`
	WarmupS     float64  `json:"warmup_s"`
	Accounts    int      `json:"accounts"`
	Backlogs    []int    `json:"backlogs"`
	LagRate     int      `json:"lag_rate"`
	LagDuration float64  `json:"lag_duration_s"`
	LagModes    []string `json:"lag_modes"`
	LagArgs     []string `json:"lag_stream_args,omitempty"`
	ChunkRows   int      `json:"chunk_rows"`
	// Parts are the parts that ran (-parts); a run of some parts only says so in its title.
	Parts []string `json:"parts,omitempty"`
}

// Run runs the configured parts on a throwaway cluster, writes the results under ResultsDir and
// returns them. A part that fails is reported in Result.Errors and the later parts still run
// when they can; the returned error joins those failures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	log := cfg.logger()
	res := &Result{Label: cfg.Label, Started: time.Now().UTC(), Config: ConfigSummary{
		Clients: cfg.Clients, DurationS: cfg.Duration.Seconds(), Rounds: cfg.Rounds, WarmupS: cfg.Warmup.Seconds(), Accounts: cfg.Accounts,
		Backlogs: cfg.Backlogs, LagRate: cfg.LagRate, LagDuration: cfg.LagDuration.Seconds(), LagModes: cfg.LagModes, LagArgs: cfg.LagStreamArgs, ChunkRows: cfg.ChunkRows,
		Parts: cfg.Parts}}

	bin := cfg.Pgtrail
	if bin == "" {
		log.Info("building pgtrail")
		var err error
		if bin, err = buildPgtrail(ctx, cfg.Root); err != nil {
			return nil, err
		}
	}
	t, err := findTools(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	t.pgtrail = bin
	res.Machine = describeMachine(ctx, cfg.Root, t)

	work, err := os.MkdirTemp("", "pgtrail-bench-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL runs as the postgres user when we are root: it must reach its directory.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	if cfg.Keep {
		log.Info("keeping the work directory", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	log.Info("starting PostgreSQL", "dir", work)
	cl, err := startCluster(ctx, filepath.Join(work, "pg"), nil)
	if err != nil {
		return nil, err
	}
	defer cl.close()

	var errs []error
	fail := func(part string, err error) {
		err = fmt.Errorf("%s: %w", part, err)
		log.Error("part failed", "err", err)
		errs = append(errs, err)
		res.Errors = append(res.Errors, err.Error())
	}
	if cfg.has(PartWrite) {
		res.Write, err = runWrite(ctx, &cfg, cl, t, filepath.Join(work, "write"))
		if err != nil {
			fail(PartWrite, err)
		}
	}
	if cfg.has(PartStream) && ctx.Err() == nil {
		var s *streamBench
		res.Stream, s, err = runStream(ctx, &cfg, cl, t, filepath.Join(work, "stream"))
		if err != nil {
			fail(PartStream, err)
		}
		if cfg.has(PartVerify) && ctx.Err() == nil {
			if err != nil || res.Stream == nil {
				fail(PartVerify, errors.New("skipped: the stream part did not build the trail"))
			} else if res.Verify, err = runVerify(ctx, &cfg, s, res.Stream.TrailEntries); err != nil {
				fail(PartVerify, err)
			}
		}
		if err := s.close(); err != nil {
			log.Warn("stop the S3 server", "err", err)
		}
	}
	res.Finished = time.Now().UTC()
	res.Machine.LoadAtEnd = loadAvg()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if werr := writeResults(&cfg, res); werr != nil {
		errs = append(errs, werr)
	}
	return res, errors.Join(errs...)
}

// writeResults writes <timestamp>.md, <timestamp>.json and latest.md into ResultsDir.
func writeResults(cfg *Config, res *Result) error {
	if err := os.MkdirAll(cfg.ResultsDir, 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	md := Markdown(res)
	stamp := res.Started.Format("20060102T150405Z")
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	for name, data := range map[string][]byte{
		stamp + ".md":   []byte(md),
		stamp + ".json": append(js, '\n'),
		"latest.md":     []byte(md),
	} {
		if err := writeFileAtomic(filepath.Join(cfg.ResultsDir, name), data); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
