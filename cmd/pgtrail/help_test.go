package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// parseCLI parses a pgtrail command line as run would, without running the command: nothing
// is connected to or read. Exit 0 means the command line parses.
func parseCLI(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, parseOnly: true}
	code = run(context.Background(), e, args)
	return code, errb.String()
}

// TestCLI_UsageErrors gives pgtrail wrong command lines: each answer is exit 2 and exactly one
// line, naming the flag or value and what would work, and where the help is; no usage dump.
func TestCLI_UsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		vars map[string]string
		want string
	}{
		{"VerifyNoScope", []string{"verify"}, nil,
			"pgtrail verify: expected: verify db | verify archive ARCHIVE_URL --public-key KEY | verify all ARCHIVE_URL --public-key KEY (run pgtrail verify --help)"},
		{"VerifyArchiveNoKey", []string{"verify", "archive", "file:///tmp/a"}, nil,
			"pgtrail verify: verify archive needs --public-key KEY (the .pub file of the key the stream signs with) (run pgtrail verify archive --help)"},
		{"VerifyAllNoURL", []string{"verify", "all", "--public-key", "k.pub"}, nil,
			"pgtrail verify: verify all needs the archive: verify all ARCHIVE_URL (or --archive URL) (run pgtrail verify all --help)"},
		{"VerifyDBArchiveFlag", []string{"verify", "db", "--archive-lag", "1h"}, nil,
			"pgtrail verify: unknown flag --archive-lag (run pgtrail verify db --help)"},
		{"VerifyFlagsFirst", []string{"verify", "--json", "db", "--bogus"}, nil,
			"pgtrail verify: unknown flag --bogus (run pgtrail verify db --help)"},
		{"UnknownFlag", []string{"status", "--jsn"}, nil,
			"pgtrail status: unknown flag --jsn (run pgtrail status --help)"},
		{"MissingValue", []string{"seal", "--interval"}, nil,
			"pgtrail seal: --interval needs a value (run pgtrail seal --help)"},
		{"BadSize", []string{"stream", "--archive", "file:///tmp/a", "--batch-bytes", "64XB"}, nil,
			`pgtrail stream: --batch-bytes: size "64XB": unknown unit "XB" (want B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB) (run pgtrail stream --help)`},
		{"BadDuration", []string{"seal", "--interval", "5x"}, nil,
			`pgtrail seal: --interval: duration "5x": unknown unit "x" (want y, mo, w, d, h, m, s or ms) (run pgtrail seal --help)`},
		{"BadInt", []string{"seal", "--batch", "many"}, nil,
			`pgtrail seal: --batch: want a whole number, not "many" (run pgtrail seal --help)`},
		{"BoolWithValue", []string{"seal", "--once=maybe"}, nil,
			`pgtrail seal: --once takes no value (or =true, =false), not "maybe" (run pgtrail seal --help)`},
		{"UnknownCommand", []string{"bogus"}, nil, `pgtrail: unknown command "bogus" (run pgtrail --help)`},
		{"ArchiveNoSubcommand", []string{"archive"}, nil,
			"pgtrail archive: expected: archive init s3://bucket/prefix or archive init file:///dir (run pgtrail archive --help)"},
		{"PartitionsUnknown", []string{"partitions", "drop"}, nil,
			`pgtrail partitions: unknown partitions command "drop" (want: list, prune) (run pgtrail partitions --help)`},
		{"PruneNoAge", []string{"partitions", "prune"}, nil,
			"pgtrail partitions: --older-than and --archive are required (run pgtrail partitions prune --help)"},
		// Nothing names the database: say so, not libpq's socket path.
		{"NoDatabase", []string{"status"}, nil,
			"pgtrail status: no database given: set DATABASE_URL or --database-url (postgres://USER@HOST/DBNAME), or libpq's PGHOST and PGDATABASE"},
		{"NoDatabaseVerify", []string{"verify", "db"}, map[string]string{"PGTRAIL_ALERT_WEBHOOK": ""},
			"pgtrail verify: no database given: set DATABASE_URL or --database-url (postgres://USER@HOST/DBNAME), or libpq's PGHOST and PGDATABASE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.vars, c.args...)
			if code != exitNotRun || errOut != c.want+"\n" || out != "" {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr\n  %q\nwant exit 2, nothing on stdout, stderr\n  %q",
					strings.Join(c.args, " "), code, out, errOut, c.want+"\n")
			}
		})
	}
}

// helpPages are every command's and subcommand's help.
var helpPages = [][]string{
	{"migrate"}, {"enable"}, {"disable"}, {"status"}, {"seal"}, {"stream"}, {"verify", "db"},
	{"verify", "archive"}, {"verify", "all"}, {"version"}, {"keygen"}, {"archive", "init"},
	{"athena"}, {"search"}, {"export"}, {"partitions", "list"}, {"partitions", "prune"},
}

// TestHelp_Content reads every help page: exit 0, on stdout, with examples, flags written
// --flag as the README writes them, and what each page must (not) say.
func TestHelp_Content(t *testing.T) {
	singleDash := regexp.MustCompile(`(?m)^\s+-[a-z][a-z-]+`)
	for _, page := range helpPages {
		t.Run(strings.Join(page, "_"), func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, append(page, "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.HasPrefix(out, "Usage: pgtrail "+strings.Join(page, " ")) || !strings.Contains(out, "\nExamples:\n  pgtrail "+page[0]) {
				t.Errorf("no usage line or no examples:\n%s", out)
			}
			if m := singleDash.FindString(out); m != "" {
				t.Errorf("a flag shown as %q, not --flag:\n%s", strings.TrimSpace(m), out)
			}
		})
	}
	checks := []struct {
		args          []string
		want, notWant []string
	}{
		{[]string{"--help"}, []string{"migrate up|down|version|to N", "--pii-columns", "Examples:", "--version"}, nil},
		{[]string{"verify", "db", "--help"}, []string{"--max-capture-lag DURATION", "--db-streams N"},
			[]string{"--archive-lag", "--s3-endpoint", "--region", "--archive URL"}},
		{[]string{"verify", "archive", "--help"}, []string{"verify archive ARCHIVE_URL --public-key KEY", "--s3-endpoint URL"},
			[]string{"--max-capture-lag", "--db-streams", "--archive-lag", "--slot"}},
		{[]string{"verify", "all", "--help"}, []string{"Usage: pgtrail verify all ARCHIVE_URL --public-key KEY", "--archive-lag DURATION", "--max-capture-lag"},
			[]string{"[ARCHIVE_URL]"}},
		{[]string{"verify", "--help"}, []string{"db ", "archive ", "all ", "pgtrail verify all s3://"}, []string{"[ARCHIVE_URL]"}},
		{[]string{"archive", "--help"}, []string{"init ", "--glacier-after DURATION", "--lock-mode COMPLIANCE|GOVERNANCE", "pgtrail archive init s3://"}, nil},
		{[]string{"partitions", "--help"}, []string{"list ", "prune ", "--older-than AGE", "--dry-run", "pgtrail partitions prune --older-than 13mo"}, nil},
		{[]string{"stream", "--help"}, []string{"--batch-bytes SIZE", "(default 64MiB)", "--wal-warn-bytes SIZE", "Sizes: 64MiB", "--batch-age DURATION", "-v\n"}, nil},
		{[]string{"help", "seal"}, []string{"Usage: pgtrail seal", "--once"}, nil},
	}
	for _, c := range checks {
		code, out, _ := runCLI(t, nil, c.args...)
		if code != 0 {
			t.Errorf("pgtrail %s: exit %d", strings.Join(c.args, " "), code)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("pgtrail %s: help lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(out, w) {
				t.Errorf("pgtrail %s: help shows %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
}

// TestHelp_ExamplesParse parses every example the help pages show: help and parser agree.
func TestHelp_ExamplesParse(t *testing.T) {
	_, top, _ := runCLI(t, nil, "--help")
	for _, l := range strings.Split(top, "\n") {
		if strings.HasPrefix(l, "  pgtrail ") {
			args, _ := splitCommandLine(strings.TrimSpace(l))
			if code, errOut := parseCLI(t, args[1:]...); code != 0 {
				t.Errorf("pgtrail --help: %s: exit %d: %s", l, code, errOut)
			}
		}
	}
	for name, lines := range examples {
		for _, line := range lines {
			args, err := splitCommandLine(line)
			if err != nil || len(args) < 2 || args[0] != "pgtrail" {
				t.Errorf("examples[%q]: %q: not a pgtrail command line (%v)", name, line, err)
				continue
			}
			if code, errOut := parseCLI(t, args[1:]...); code != 0 {
				t.Errorf("examples[%q]: %s: exit %d: %s", name, line, code, errOut)
			}
		}
	}
}

// TestParse_SizesAndDurations: size flags (*-bytes) and duration flags read the README's forms,
// however the command declared them (fs.Int, fs.Int64, fs.Duration).
func TestParse_SizesAndDurations(t *testing.T) {
	cases := []struct {
		args                []string
		batchBytes, walWarn int64
		age                 time.Duration
	}{
		{[]string{"--batch-bytes", "64MiB", "--wal-warn-bytes", "1GiB", "--batch-age", "500ms"}, 64 << 20, 1 << 30, 500 * time.Millisecond},
		{[]string{"--batch-bytes=512KB", "--wal-warn-bytes", "1073741824", "--batch-age", "90d"}, 512_000, 1 << 30, 90 * 24 * time.Hour},
		{[]string{"--batch-age", "13mo"}, 1, 2, 13 * 31 * 24 * time.Hour},
		{[]string{"--batch-age", "7y"}, 1, 2, 7 * 366 * 24 * time.Hour},
		{[]string{"--batch-age", "1h30m"}, 1, 2, 90 * time.Minute},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			fs := newFlagSet(&env{stdout: io.Discard, stderr: io.Discard}, "test", "test")
			batchBytes := fs.Int("batch-bytes", 1, "")
			walWarn := fs.Int64("wal-warn-bytes", 2, "")
			age := fs.Duration("batch-age", time.Second, "")
			if _, err := parse(fs, c.args); err != nil {
				t.Fatal(err)
			}
			if int64(*batchBytes) != c.batchBytes || *walWarn != c.walWarn || *age != c.age {
				t.Errorf("batch-bytes %d, wal-warn-bytes %d, batch-age %s; want %d, %d, %s", *batchBytes, *walWarn, *age, c.batchBytes, c.walWarn, c.age)
			}
		})
	}
}

// TestVersion: the module version and the commit, "(devel)" and "commit unknown" when the go
// command recorded neither, "dirty" for a modified tree; --version is version.
func TestVersion(t *testing.T) {
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"Unknown", nil, "pgtrail (devel) (commit unknown, go"},
		{"Release", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0440e78fdcce0123456789abcdef0123456789ab"}, {Key: "vcs.time", Value: "2026-12-07T15:26:07Z"}, {Key: "vcs.modified", Value: "false"}}},
			"pgtrail v1.4.0 (commit 0440e78fdcce 2026-12-07T15:26:07Z, go1.26.0)"},
		{"Dirty", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0440e78fdcce0123456789abcdef0123456789ab"}, {Key: "vcs.modified", Value: "true"}}},
			"pgtrail (devel) (commit 0440e78fdcce, dirty, go1.26.0)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := readVersion(c.bi, c.bi != nil).String(); !strings.HasPrefix(got, c.want) {
				t.Errorf("version line %q; want %q", got, c.want)
			}
		})
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "pgtrail ") || strings.Count(out, "\n") != 1 || errOut != "" {
			t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q", args[0], code, out, errOut)
		}
	}
	code, out, _ := runCLI(t, nil, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || v.GoVersion == "" {
		t.Errorf("version --json: exit %d, %v: %s", code, err, out)
	}
}
