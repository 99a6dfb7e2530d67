package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Targets from the benchmark issue.
const (
	TargetWriteShare  = 0.85 // pgtrail TPS / no-audit TPS at the highest client count
	TargetStreamShare = 0.70 // pgtrail stream events/s / pg_recvlogical events/s
	TargetLagP99      = 2.0  // seconds, commit to durable object, default batching
	// Capture v2 (issue 14): at the highest client count, mode wal's hot path alone and its whole
	// pipeline (the stream chaining and archiving on the same machine) against no audit, and its
	// commit-to-durable p99.
	TargetWALHotShare      = 0.85
	TargetWALPipelineShare = 0.70
	TargetWALLagP99        = 1.0
	TargetVerifyShare      = 0.50 // verify archive entries/s / raw SHA-256 chaining
	TargetVerifyDBCopy     = 1.00 // verify db entries/s / COPY of the same rows
	flatRSSGrowthLimit     = 1.25 // peak RSS at the largest backlog / at the smallest: "flat"
)

// Check is one target and whether the run met it.
type Check struct {
	Target   string
	Measured string
	Met      string // "met", "MISSED", or "n/a"
}

// Checks evaluates the targets against a result.
func Checks(r *Result) []Check {
	var out []Check
	if w := r.Write; w != nil {
		clients := slices.Clone(r.Config.Clients)
		slices.Sort(clients)
		top := clients[len(clients)-1]
		if p := findRun(w.Runs, ScenarioPgtrail, top); p != nil && p.Error == "" && p.Share > 0 {
			out = append(out, Check{fmt.Sprintf("pgtrail ≥ %s of no-audit TPS at %d clients", pct(TargetWriteShare), top),
				fmt.Sprintf("%s (%s TPS)", pct(p.Share), num(p.TPS)), metIf(p.Share >= TargetWriteShare)})
		} else {
			out = append(out, Check{fmt.Sprintf("pgtrail ≥ %s of no-audit TPS at %d clients", pct(TargetWriteShare), top), "no measurement", "n/a"})
		}
		for _, t := range []struct {
			scenario, what string
			share          float64
		}{{ScenarioPgtrailWALHot, "WAL mode hot path", TargetWALHotShare}, {ScenarioPgtrailWAL, "WAL mode whole pipeline", TargetWALPipelineShare}} {
			name := fmt.Sprintf("%s ≥ %s of no-audit TPS at %d clients", t.what, pct(t.share), top)
			if p := findRun(w.Runs, t.scenario, top); p != nil && p.Error == "" && p.Share > 0 {
				out = append(out, Check{name, fmt.Sprintf("%s (%s TPS)", pct(p.Share), num(p.TPS)), metIf(p.Share >= t.share)})
			} else {
				out = append(out, Check{name, "no measurement", "n/a"})
			}
		}
		var below []string
		var compared int
		for _, c := range clients {
			p, pl := findRun(w.Runs, ScenarioPgtrail, c), findRun(w.Runs, ScenarioPlain, c)
			if p == nil || pl == nil || p.TPS == 0 || pl.TPS == 0 {
				continue
			}
			compared++
			if p.TPS < pl.TPS {
				below = append(below, fmt.Sprintf("%d clients: %s vs %s", c, num(p.TPS), num(pl.TPS)))
			}
		}
		measured := "pgtrail ≥ plain at every client count"
		if len(below) > 0 {
			measured = "below plain at " + strings.Join(below, "; ")
		}
		if compared == 0 {
			out = append(out, Check{"pgtrail never below the plain trigger", "no measurement", "n/a"})
		} else {
			out = append(out, Check{"pgtrail never below the plain trigger", measured, metIf(len(below) == 0)})
		}
	}
	if s := r.Stream; s != nil && len(r.Config.Backlogs) > 0 {
		largest := slices.Max(r.Config.Backlogs)
		smallest := slices.Min(r.Config.Backlogs)
		for _, d := range s.Drains {
			if d.Backlog != largest || d.Path == PathLimit {
				continue
			}
			name := fmt.Sprintf("stream ≥ %s of pg_recvlogical, %s backlog, %s (%s)", pct(TargetStreamShare), num(float64(largest)), shortPath(d.Path), d.Sink)
			if d.Stalled {
				out = append(out, Check{name, fmt.Sprintf("did not finish within %s s", num(d.Seconds)), "MISSED"})
				continue
			}
			if d.Share == 0 {
				out = append(out, Check{name, "no measurement", "n/a"})
				continue
			}
			out = append(out, Check{name, fmt.Sprintf("%s (%s vs %s events/s)", pct(d.Share), num(d.PerSec), num(d.PerSec/d.Share)), metIf(d.Share >= TargetStreamShare)})
		}
		if largest != smallest {
			for _, d := range s.Drains {
				if d.Backlog != largest || d.Path == PathLimit || d.PeakRSS == 0 {
					continue
				}
				small := findDrain(s.Drains, smallest, d.Path, d.Sink)
				if small == nil || small.PeakRSS == 0 {
					continue
				}
				g := float64(d.PeakRSS) / float64(small.PeakRSS)
				out = append(out, Check{fmt.Sprintf("stream peak RSS flat, %s (%s): %s vs %s backlog", shortPath(d.Path), d.Sink, num(float64(largest)), num(float64(smallest))),
					fmt.Sprintf("%s → %s MiB (×%.2f)", mib(small.PeakRSS), mib(d.PeakRSS), g), metIf(g <= flatRSSGrowthLimit)})
			}
		}
		for _, l := range s.Lags {
			limit := TargetLagP99
			if l.Mode == "wal" {
				limit = TargetWALLagP99
			}
			name := fmt.Sprintf("commit → durable p99 < %.0f s at %s events/s (mode %s, %s)", limit, num(float64(l.TargetRate)), orUnknown(l.Mode), l.Sink)
			if l.Skipped != "" || l.Error != "" || l.Transactions == 0 {
				out = append(out, Check{name, "no measurement", "n/a"})
				continue
			}
			out = append(out, Check{name, fmt.Sprintf("p99 %s s, p50 %s s", sec(l.P99), sec(l.P50)), metIf(l.P99 < limit)})
		}
	}
	if v := r.Verify; v != nil {
		for _, run := range v.Runs {
			if run.What != VerifyDB {
				continue
			}
			name := fmt.Sprintf("%s ≥ %s of COPY of the same rows", run.What, pct(TargetVerifyDBCopy))
			switch {
			case run.Unavailable != "":
				out = append(out, Check{name, "not available", "n/a"})
			case run.ShareOfCopy == 0:
				out = append(out, Check{name, "no measurement", "n/a"})
			default:
				out = append(out, Check{name, sharePairs(run.ShareOfCopy, run.Pairs), metIf(run.ShareOfCopy >= TargetVerifyDBCopy)})
			}
		}
		for _, run := range v.Runs {
			if !strings.HasPrefix(run.What, VerifyArchive) {
				continue
			}
			name := fmt.Sprintf("%s ≥ %s of raw SHA-256", run.What, pct(TargetVerifyShare))
			switch {
			case run.Unavailable != "":
				out = append(out, Check{name, "not available", "n/a"})
			case run.Share == 0:
				out = append(out, Check{name, "no measurement", "n/a"})
			default:
				out = append(out, Check{name, sharePairs(run.Share, run.Pairs), metIf(run.Share >= TargetVerifyShare)})
			}
		}
	}
	return out
}

func metIf(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func findRun(runs []*WriteRun, scenario string, clients int) *WriteRun {
	for _, r := range runs {
		if r.Scenario == scenario && r.Clients == clients {
			return r
		}
	}
	return nil
}

func findDrain(ds []*DrainRun, backlog int, path, sink string) *DrainRun {
	for _, d := range ds {
		if d.Backlog == backlog && d.Path == path && d.Sink == sink {
			return d
		}
	}
	return nil
}

func shortPath(p string) string {
	switch p {
	case PathSlot:
		return "backlog in the slot"
	case PathBackfill:
		return "backlog at start"
	}
	return p
}

// Markdown renders a result as the tables of bench/results and docs/benchmarks.md.
func Markdown(r *Result) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	only := ""
	if parts := r.Config.Parts; len(parts) > 0 && !slices.Equal(parts, AllParts) {
		only = ", parts " + strings.Join(parts, ", ") + " only"
	}
	p("# pgtrail benchmark (%s run%s)\n\n", r.Label, only)
	p("%s UTC, %s. ", r.Started.Format("2006-01-02 15:04"), r.Finished.Sub(r.Started).Round(1e9))
	m := r.Machine
	p("Machine: %s, %d cores, %s GiB RAM, Linux %s; %s; %s; commit %s. ", m.CPU, m.Cores, m.MemoryGiB, m.Kernel, m.PostgreSQL, m.Go, m.Commit)
	p("Load average at start %s, at end %s (the machine is shared: compare rows of the same run, not runs).\n\n", m.LoadAtBeg, m.LoadAtEnd)
	p("Cluster: a throwaway PostgreSQL started by the harness; fsync, synchronous_commit and full_page_writes on, shared_buffers 128MB, max_wal_size 4GB, wal_level logical.\n\n")
	if r.Label == "smoke" {
		p("**Smoke run**: tiny sizes, a few seconds per part. It shows that the harness produces every number; the figures say nothing about the targets.\n\n")
	}

	if checks := Checks(r); len(checks) > 0 {
		p("## Targets\n\n| target | measured | |\n|---|---|---|\n")
		for _, c := range checks {
			met := c.Met
			if met == "MISSED" {
				met = "**MISSED**"
			}
			p("| %s | %s | %s |\n", c.Target, c.Measured, met)
		}
		p("\n")
	}
	if r.Write != nil {
		writeMarkdown(&b, r)
	}
	if r.Stream != nil {
		streamMarkdown(&b, r)
	}
	if r.Verify != nil {
		verifyMarkdown(&b, r)
	}
	if len(r.Errors) > 0 {
		p("## Errors\n\n")
		for _, e := range r.Errors {
			p("- %s\n", e)
		}
		p("\n")
	}
	return b.String()
}

func writeMarkdown(b *strings.Builder, r *Result) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w := r.Write
	clients := slices.Clone(r.Config.Clients)
	p("## 1. Write overhead\n\n")
	p("pgbench, one transaction = UPDATE of a random account's balance and updated_at + INSERT of a payment "+
		"(accounts: %s rows; both tables audited), prepared statements, %s s per point measured in %d rounds: "+
		"within one client count the scenarios take turns, the order rotating each round, so that a shared "+
		"machine's drift spreads over all of them. Each round starts from a fresh copy of the same frozen data, "+
		"prewarmed, after a %s s warm-up and a CHECKPOINT. p99 from pgbench's per-transaction logs. WAL per "+
		"transaction includes, for pgtrail, sealing what the round wrote. Rows marked *diagnostic* take pgtrail "+
		"apart (they run at the highest client count only) to show where its cost comes from; they are not targets.\n\n",
		num(float64(r.Config.Accounts)), num(r.Config.DurationS), w.Rounds, num(r.Config.WarmupS))
	p("| scenario |")
	for _, c := range clients {
		p(" TPS %d |", c)
	}
	for _, c := range clients {
		p(" share %d |", c)
	}
	for _, c := range clients {
		p(" p99 ms %d |", c)
	}
	p(" WAL B/txn %d |\n|---|", clients[len(clients)-1])
	for range 3*len(clients) + 1 {
		p("---|")
	}
	p("\n")
	for _, sc := range scenarios {
		var cells []string
		found := false
		for _, c := range clients {
			run := findRun(w.Runs, sc.name, c)
			cells = append(cells, tpsCell(run))
			found = found || run != nil
		}
		if !found {
			continue
		}
		for _, c := range clients {
			run := findRun(w.Runs, sc.name, c)
			if run == nil || run.Share == 0 {
				cells = append(cells, "–")
			} else {
				cells = append(cells, pct(run.Share))
			}
		}
		for _, c := range clients {
			run := findRun(w.Runs, sc.name, c)
			if run == nil || run.P99Ms == 0 {
				cells = append(cells, "–")
			} else {
				cells = append(cells, ms(run.P99Ms))
			}
		}
		if run := findRun(w.Runs, sc.name, clients[len(clients)-1]); run != nil && run.WALPerTx > 0 {
			cells = append(cells, num(run.WALPerTx))
		} else {
			cells = append(cells, "–")
		}
		p("| %s | %s |\n", sc.label, strings.Join(cells, " | "))
	}
	p("\n### Every run\n\n")
	p("| clients | scenario | TPS | rounds | share | mean ms | p99 ms | WAL B/txn | machine CPU busy | notes |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, run := range w.Runs {
		var notes []string
		if sc := scenarioByName(run.Scenario); sc != nil && sc.sealer && run.Error == "" {
			notes = append(notes, fmt.Sprintf("sealer backend %s of a core; up to %s pending at a round's end, sealed within %s s",
				pct(run.SealerCores), num(float64(run.PendingAtEnd)), sec(run.CatchUp)))
		}
		if sc := scenarioByName(run.Scenario); sc != nil && sc.stream && run.Error == "" {
			notes = append(notes, fmt.Sprintf("CPU per audit event: daemon %.1f µs, walsender %.1f µs; chained and archived within %s s of a round's end",
				run.StreamCPUPerEventUs, run.WalsenderCPUPerEventUs, sec(run.CatchUp)))
		}
		if run.Failed > 0 {
			notes = append(notes, fmt.Sprintf("%d failed transactions", run.Failed))
		}
		if run.Skipped != "" {
			notes = append(notes, "skipped: "+run.Skipped)
		}
		if run.Error != "" {
			notes = append(notes, "error: "+run.Error)
		}
		var rounds []string
		for _, t := range run.RoundTPS {
			rounds = append(rounds, num(t))
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", run.Clients, run.Scenario, tpsCell(run), strings.Join(rounds, " / "), pctOr(run.Share),
			msOr(run.MeanMs), msOr(run.P99Ms), numOr(run.WALPerTx), pctOr(run.MachineBusy), cell(strings.Join(notes, "; ")))
	}
	top := clients[len(clients)-1]
	p("\n### Mean statement latency at %d clients (ms, pgbench -r)\n\n", top)
	p("| scenario | BEGIN | UPDATE | INSERT | END (commit) |\n|---|---|---|---|---|\n")
	for _, sc := range scenarios {
		run := findRun(w.Runs, sc.name, top)
		if run == nil || len(run.StmtMs) == 0 {
			continue
		}
		p("| %s | %s | %s | %s | %s |\n", sc.name, ms3(run.StmtMs["BEGIN"]), ms3(run.StmtMs["UPDATE"]), ms3(run.StmtMs["INSERT"]), ms3(run.StmtMs["END"]))
	}
	for _, n := range w.Notes {
		p("\n- %s", n)
	}
	p("\n\n")
}

func streamMarkdown(b *strings.Builder, r *Result) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	s := r.Stream
	p("## 2. Stream throughput and lag\n\n")
	p("Each backlog is half account updates (row before and after), half payment inserts, written in transactions "+
		"of up to %s rows and chained by `pgtrail seal --once` (batches of 50,000). Every slot is created before the "+
		"backlog exists. *Limit*: `pg_recvlogical --start --endpos` (pgoutput, proto_version 1, publication pgtrail) "+
		"into /dev/null on a slot created just before the seal. *Backlog in the slot*: `pgtrail stream` (no sealer) "+
		"was running while the backlog was written, then paused (SIGSTOP) while it was sealed; timed from SIGCONT until "+
		"its events counter reaches the backlog. *Backlog at start*: `pgtrail stream --exit-when-caught-up` started "+
		"after the seal, timed to exit (it reads entries already sealed from the table, then the slot up to the WAL "+
		"end). Peak RSS is the process's VmHWM.\n\n", num(float64(r.Config.ChunkRows)))
	p("| backlog | path | sink | events | seconds | events/s | share of limit | peak RSS MiB | CPU s | notes |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, d := range s.Drains {
		var notes []string
		if d.Backfill > 0 {
			notes = append(notes, fmt.Sprintf("backfill from the table: %s s (%s events/s), then catching up through the slot",
				sec(d.Backfill), num(float64(d.Events)/d.Backfill)))
		}
		if d.Stalled {
			notes = append(notes, fmt.Sprintf("**stalled**: had not exited after %s s and was stopped", num(d.Seconds)))
		}
		if d.Skipped != "" {
			notes = append(notes, "skipped: "+d.Skipped)
		}
		if d.Error != "" {
			notes = append(notes, "error: "+d.Error)
		}
		secs := secOr(d.Seconds)
		if d.Stalled {
			secs = "> " + secs
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", num(float64(d.Backlog)), d.Path, d.Sink, num(float64(d.Events)),
			secs, numOr(d.PerSec), pctOr(d.Share), mibOr(d.PeakRSS), secOr(d.CPU), cell(strings.Join(notes, "; ")))
	}
	if len(s.Seals) > 0 {
		p("\nSealing the backlogs (`pgtrail seal --once`, one backend): ")
		var parts []string
		for _, sr := range s.Seals {
			rate := 0.0
			if sr.Seconds > 0 {
				rate = float64(sr.Events) / sr.Seconds
			}
			parts = append(parts, fmt.Sprintf("%s entries in %s s (%s entries/s)", num(float64(sr.Events)), sec(sr.Seconds), num(rate)))
		}
		p("%s.\n", strings.Join(parts, "; "))
	}
	p("\n### Commit-to-durable lag at a steady rate\n\n")
	d := s.Defaults
	p("`pgtrail stream` with its defaults (sealer every %s; a batch at %s events, %s bytes or %s of age), while 4 connections "+
		"commit %s transactions/s of 10 events each (5 account updates, 5 payments) for %s s. *Measured*: from each "+
		"transaction's commit as the client saw it to the first poll of the archive (every 25 ms) that finds every digest of "+
		"the batch holding its last entry — the point at which the daemon acknowledges it; the daemon has first caught up with whatever its archive lacked, and each run starts after `VACUUM audit.pending` and a CHECKPOINT. *Histogram*: the daemon's "+
		"`pgtrail_stream_commit_to_durable_seconds`, which starts at the sealer's commit (interpolated within its "+
		"power-of-two buckets); *upload*: `pgtrail_stream_upload_seconds`, the time to make one batch durable.\n\n",
		orUnknown(d["seal-interval"]), orUnknown(d["batch-events"]), orUnknown(d["batch-bytes"]), orUnknown(d["batch-age"]),
		num(float64(r.Config.LagRate)/lagEventsPerTx), num(r.Config.LagDuration))
	if len(r.Config.LagArgs) > 0 {
		p("The lag runs' daemons had these flags beyond the defaults: `%s`.\n\n", strings.Join(r.Config.LagArgs, " "))
	}
	p("| capture | sink | target events/s | achieved | transactions | p50 s | p99 s | max s | histogram p50 s | histogram p99 s | batches | upload p50 / p99 s | peak RSS MiB | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range s.Lags {
		var notes []string
		if l.Missing > 0 {
			notes = append(notes, fmt.Sprintf("%d transactions never seen", l.Missing))
		}
		if l.WatcherMaxPoll > 0 {
			notes = append(notes, fmt.Sprintf("slowest poll of the archive by the harness %s s", ms3(l.WatcherMaxPoll)))
		}
		if l.Skipped != "" {
			notes = append(notes, "skipped: "+l.Skipped)
		}
		if l.Error != "" {
			notes = append(notes, "error: "+l.Error)
		}
		upload := "–"
		if l.Batches > 0 {
			upload = fmt.Sprintf("%s / %s", ms3(l.UploadP50), ms3(l.UploadP99))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", orUnknown(l.Mode), l.Sink, num(float64(l.TargetRate)), numOr(l.Rate), numOr(float64(l.Transactions)),
			secOr(l.P50), secOr(l.P99), secOr(l.Max), secOr(l.HistP50), secOr(l.HistP99), numOr(l.Batches), upload, mibOr(l.PeakRSS), cell(strings.Join(notes, "; ")))
	}
	for _, n := range s.Notes {
		p("\n- %s", n)
	}
	p("\n\n")
}

func verifyMarkdown(b *strings.Builder, r *Result) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	v := r.Verify
	p("## 3. Verification\n\n")
	p("The whole trail of part 2 (mean canonical entry %s bytes). A verify row's seconds run from its report's "+
		"started_at to finished_at, as the raw and COPY rows time only their work; the command's wall time, with its "+
		"start, its connection and the audit event it records, is in the notes. `pgtrail verify` uses every core "+
		"(its default workers), the raw row one. The raw row chains "+
		"SHA-256(h ‖ entry) over buffers of every entry's canonical size, in process, on one goroutine (best of "+
		"three): the least work any verifier must do, so an upper bound on a one-core verifier's speed. The COPY "+
		"row reads the rows verify db reads, with its statement, in one stream into io.Discard (CPU is the "+
		"harness's): database verification should be no slower. Shares are measured side by side, %d pairs each: "+
		"every verify archive run right after a raw chaining run, verify db and COPY in turns, each first in every "+
		"other pair; a share is the median of its pairs' ratios (listed in the notes), and each row shows its "+
		"fastest run. Each verify archive row counts the entries that run verified: the file archive holds fewer "+
		"than the trail (its stream stops before the S3 lag run).\n\n", num(v.MeanEntrySize), verifyPairs)
	p("| what | entries | seconds | entries/s | share of raw | peak RSS MiB | CPU s | notes |\n|---|---|---|---|---|---|---|---|\n")
	for _, run := range v.Runs {
		var notes []string
		add := func(ok bool, note string) {
			if ok {
				notes = append(notes, note)
			}
		}
		add(run.Error == "" && run.Unavailable != "", run.Unavailable)
		add(run.Error != "", "error: "+run.Error)
		add(run.ShareOfCopy > 0, pct(run.ShareOfCopy)+" of COPY's entries/s")
		add(run.Process > 0, "command "+sec(run.Process)+" s")
		add(run.ServerCPU > 0, "S3 server CPU "+sec(run.ServerCPU)+" s")
		add(len(run.Pairs) > 0, "side by side: "+pcts(run.Pairs))
		note := strings.Join(notes, "; ")
		rss := mibOr(run.PeakRSS)
		if run.What == VerifyRaw || run.What == VerifyCopy {
			rss = "–"
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", run.What, num(float64(run.Entries)), secOr(run.Seconds), numOr(run.PerSec),
			pctOr(run.Share), rss, secOr(run.CPU), cell(note))
	}
	for _, n := range v.Notes {
		p("\n- %s", n)
	}
	p("\n\n")
}

func tpsCell(run *WriteRun) string {
	switch {
	case run == nil:
		return "–"
	case run.Skipped != "":
		return "skipped"
	case run.Error != "":
		return "error"
	}
	return num(run.TPS)
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// num formats a number with thousands separators, no decimals (one decimal under 10).
func num(f float64) string {
	if f != 0 && f < 10 && f > -10 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 0, 64) + "%" }

// sharePairs shows a share and the side-by-side ratios it is the median of.
func sharePairs(share float64, pairs []float64) string {
	if len(pairs) < 2 {
		return pct(share)
	}
	return fmt.Sprintf("%s (median of %s)", pct(share), pcts(pairs))
}

// pcts lists ratios as percentages: "51% / 55% / 58%".
func pcts(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = pct(f)
	}
	return strings.Join(s, " / ")
}

func ms(f float64) string  { return strconv.FormatFloat(f, 'f', 2, 64) }
func ms3(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
func sec(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }
func mib(b int64) string   { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 0, 64) }

func or(f float64, format func(float64) string) string {
	if f == 0 {
		return "–"
	}
	return format(f)
}
func pctOr(f float64) string { return or(f, pct) }
func msOr(f float64) string  { return or(f, ms) }
func numOr(f float64) string { return or(f, num) }
func secOr(f float64) string { return or(f, sec) }
func mibOr(b int64) string {
	if b == 0 {
		return "–"
	}
	return mib(b)
}

// Incomplete lists the measurements a result lacks: a run that neither produced its numbers nor
// says why it was skipped or is unavailable. make bench-smoke fails on any.
func Incomplete(r *Result) []string {
	var out []string
	out = append(out, r.Errors...)
	if w := r.Write; w != nil {
		for _, run := range w.Runs {
			switch {
			case run.Skipped != "":
			case run.Error != "":
				out = append(out, fmt.Sprintf("write %s@%d: %s", run.Scenario, run.Clients, run.Error))
			case run.TPS <= 0 || run.P99Ms <= 0 || run.MeanMs <= 0 || run.WALPerTx <= 0 || run.Share <= 0:
				out = append(out, fmt.Sprintf("write %s@%d: missing TPS, latency, WAL or share", run.Scenario, run.Clients))
			}
		}
	}
	if s := r.Stream; s != nil {
		for _, d := range s.Drains {
			switch {
			case d.Skipped != "":
			case d.Error != "":
				out = append(out, fmt.Sprintf("stream %s %s %d: %s", d.Path, d.Sink, d.Backlog, d.Error))
			case d.Stalled:
				// A measurement too: the daemon did not finish in time.
			case d.PerSec <= 0 || d.PeakRSS <= 0 && d.Path != PathLimit || d.Share <= 0:
				out = append(out, fmt.Sprintf("stream %s %s %d: missing events/s, RSS or share", d.Path, d.Sink, d.Backlog))
			}
		}
		if len(s.Drains) == 0 {
			out = append(out, "stream: no drain measured")
		}
		for _, l := range s.Lags {
			switch {
			case l.Skipped != "":
			case l.Error != "":
				out = append(out, fmt.Sprintf("lag %s %s: %s", l.Mode, l.Sink, l.Error))
			case l.Transactions == 0 || l.P99 <= 0 || l.HistP99 <= 0:
				out = append(out, fmt.Sprintf("lag %s %s: missing percentiles", l.Mode, l.Sink))
			}
		}
	}
	if v := r.Verify; v != nil {
		for _, run := range v.Runs {
			switch {
			case run.Unavailable != "":
			case run.Error != "":
				out = append(out, fmt.Sprintf("verify %s: %s", run.What, run.Error))
			case run.PerSec <= 0 || run.Entries <= 0 || (run.What != VerifyRaw && run.What != VerifyCopy && run.Share <= 0):
				out = append(out, fmt.Sprintf("verify %s: missing entries/s or share", run.What))
			}
		}
	}
	return out
}
