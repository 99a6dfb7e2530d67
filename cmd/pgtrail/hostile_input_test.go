package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/fileinput/fileinputtest"
)

// Hostile file inputs and archive URLs (issue 15): what an operator's typo, or someone who can
// choose a path pgtrail reads, must not achieve. Each case says what was tried and what must
// survive.

// unreachableDB is a database URL nothing answers on: a command that gets as far as connecting
// has already accepted what it was given. (verify archive is run without it: given a database,
// it connects before it reads the archive.)
const unreachableDB = "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"

// limitedRun is one run of the pgtrail binary as a separate process.
type limitedRun struct {
	code    int
	stderr  string
	maxRSS  int64 // the highest peak resident memory seen while it ran (VmHWM), bytes
	elapsed time.Duration
}

// watchRSS polls the peak resident memory (VmHWM) of process pid every 2 ms once it runs bin
// (before the exec, /proc shows the test's own memory), until stop is closed, and returns the
// highest seen: a lower bound of the real peak, exact for any run that lasts.
func watchRSS(pid int, bin string, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		defer func() { out <- peak }()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		proc := fmt.Sprintf("/proc/%d/", pid)
		for {
			if exe, err := os.Readlink(proc + "exe"); err == nil && exe == bin {
				status, _ := os.ReadFile(proc + "status")
				for line := range strings.Lines(string(status)) {
					var kb int64
					if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
						peak = max(peak, kb<<10)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// runLimited runs the pgtrail binary with args in dir, with the PG* variables unreachable, under an
// address-space limit of 4 GiB, so that an unbounded read dies there instead of taking the test
// machine's memory. When signalAfter > 0 it sends SIGTERM after that long. It kills the process
// after timeout and reports that as a failure of the test.
func runLimited(t *testing.T, dir string, signalAfter, timeout time.Duration, args ...string) limitedRun {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `ulimit -v 4194304 && exec "$0" "$@"`, binary(t)}, args...)...)
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second // Wait returns even if something inherited stderr and lives on
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "PGHOST=127.0.0.1", "PGPORT=1", "PGCONNECT_TIMEOUT=2"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopWatch := make(chan struct{})
	peak := watchRSS(cmd.Process.Pid, binary(t), stopWatch)
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(stopWatch)
		done <- err
	}()
	var signal <-chan time.Time
	if signalAfter > 0 {
		signal = time.After(signalAfter)
	}
	deadline := time.After(timeout)
	var err error
wait:
	for {
		select {
		case <-signal:
			cmd.Process.Signal(syscall.SIGTERM)
		case err = <-done:
			break wait
		case <-deadline:
			cmd.Process.Kill()
			<-done
			<-peak
			t.Fatalf("pgtrail %s: still running after %s (SIGTERM sent: %v); killed. stderr: %.300q",
				strings.Join(args, " "), timeout, signalAfter > 0, stderr.String())
		}
	}
	// (Not the exit's rusage: its ru_maxrss counts the test process, whose memory the child
	// shared until its exec.)
	r := limitedRun{code: cmd.ProcessState.ExitCode(), stderr: stderr.String(), elapsed: time.Since(start), maxRSS: <-peak}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return r
}

// writeKeys writes a key pair into dir and returns the private key's path (the public one is
// path+".pub").
func writeKeys(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "signing.key")
	if _, err := archive.WriteKeyFiles(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// bigRulesFile writes a valid rules file of about 48 MB: a million rules that each parse.
func bigRulesFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "rules.yaml")
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := 0; b.Len() < 48<<20; i++ {
		fmt.Fprintf(&b, "  - {name: tampering-%07d, type: tampering, severity: critical}\n", i)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCLI_HostileFileInputs gives every file input of the CLI something without end or far too
// big: /dev/zero as a key or rules file, a 48 MB rules file, an archive object that is a link to
// /dev/zero. What must survive: the machine's memory (no peak over 100 MiB is seen, and the
// process runs under a 4 GiB address-space limit, which an unbounded read hits in seconds), the
// operator's time (it ends within 15 s) and a one-line error naming the file and the limit,
// exit 2.
func TestCLI_HostileFileInputs(t *testing.T) {
	dir := t.TempDir()
	key := writeKeys(t, dir)
	arch := filepath.Join(dir, "archive")
	if err := os.Mkdir(arch, 0o755); err != nil {
		t.Fatal(err)
	}
	rules := bigRulesFile(t, dir)
	// An archive whose only digest is a link to /dev/zero: what someone who can write the
	// archive directory (not the key) can plant for the verifier to read.
	planted := filepath.Join(dir, "planted")
	digestDir := filepath.Join(planted, filepath.FromSlash(archive.DigestKey(1, 1, 0)))
	if err := os.MkdirAll(filepath.Dir(digestDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", digestDir); err != nil {
		t.Fatal(err)
	}
	// A new, empty archive (marked as one), for the checkpoint file's case.
	marked := filepath.Join(dir, "marked")
	markedSink, err := archive.Open(context.Background(), "file://"+marked, archive.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.Mark(context.Background(), markedSink); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want []string // in the one line on stderr
	}{
		{"VerifyCheckpointFileDevZero", []string{"verify", "archive", "file://" + marked, "--public-key", key + ".pub", "--signing-key", key,
			"--since-checkpoint", "--checkpoint-file", "/dev/zero"}, []string{"checkpoint", "/dev/zero", "64 KiB"}},
		{"VerifyPublicKeyDevZero", []string{"verify", "archive", "file://" + arch, "--public-key", "/dev/zero"},
			[]string{"--public-key", "/dev/zero", "64 KiB"}},
		{"VerifySigningKeyDevZero", []string{"verify", "archive", "file://" + arch, "--public-key", key + ".pub", "--signing-key", "/dev/zero"},
			[]string{"--signing-key", "/dev/zero", "64 KiB"}},
		{"StreamSigningKeyDevZero", []string{"stream", "--archive", "file://" + arch, "--signing-key", "/dev/zero"},
			[]string{"--signing-key", "/dev/zero", "64 KiB"}},
		{"PruneSigningKeyDevZero", []string{"partitions", "prune", "--older-than", "13mo", "--archive", "file://" + arch, "--signing-key", "/dev/zero"},
			[]string{"--signing-key", "/dev/zero", "64 KiB"}},
		{"StreamRules48MB", []string{"stream", "--archive", "file://" + arch, "--signing-key", key, "--rules", rules},
			[]string{"--rules", rules, "4 MiB"}},
		{"StreamRulesDevZero", []string{"stream", "--archive", "file://" + arch, "--signing-key", key, "--rules", "/dev/zero"},
			[]string{"--rules", "/dev/zero", "4 MiB"}},
		{"VerifyDigestLinkedToDevZero", []string{"verify", "archive", "file://" + planted, "--public-key", key + ".pub"},
			[]string{archive.DigestKey(1, 1, 0), "not a regular file but a device"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runLimited(t, dir, 0, 15*time.Second, c.args...)
			line := strings.TrimSpace(r.stderr)
			if r.code != exitNotRun || strings.Contains(line, "\n") {
				t.Errorf("exit %d, stderr %.500q; want exit 2 and one line", r.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %.500q lacks %q", line, w)
				}
			}
			if r.maxRSS > 100<<20 {
				t.Errorf("peak RSS %d MiB, want under 100 MiB", r.maxRSS>>20)
			}
			t.Logf("exit %d in %s, peak RSS seen %d MiB: %.200s", r.code, r.elapsed.Round(time.Millisecond), r.maxRSS>>20, line)
		})
	}
}

// TestCLI_KeyReadCancelledBySIGTERM gives --public-key a FIFO whose writer never writes (a
// process substitution that hangs, a mistyped path onto a pipe). Tried: SIGTERM while pgtrail
// waits on it. Must survive: the signal's meaning: pgtrail exits within 5 s, non-zero, saying
// what it was reading.
func TestCLI_KeyReadCancelledBySIGTERM(t *testing.T) {
	dir := t.TempDir()
	fifo := fileinputtest.StalledFIFO(t, dir, "key.pub")
	arch := t.TempDir()
	r := runLimited(t, dir, 500*time.Millisecond, 5500*time.Millisecond,
		"verify", "archive", "file://"+arch, "--public-key", fifo)
	if r.code == 0 || !strings.Contains(r.stderr, fifo) {
		t.Errorf("exit %d after %s, stderr %q; want non-zero and the file named", r.code, r.elapsed, r.stderr)
	}
}

// TestCLI_ArchiveURLs tries the archive URLs that once went wrong silently: file://tmp/arch (two
// slashes: "tmp" is a host name), which was read as a path relative to the working directory; no
// --archive at all, which made the stream write ./pgtrail-archive wherever it was started; a
// path under a missing directory, which the stream created with every parent; a directory that
// is no archive at all (/etc), which verified as "intact". What must survive: the operator's
// intent: each is refused with exit 2 and a message saying what to write or what is wrong,
// nothing is created where it was not asked for, and a new archive is created only by stream or
// archive init, which say so.
func TestCLI_ArchiveURLs(t *testing.T) {
	var queryBin string
	if !testing.Short() {
		var err error
		if queryBin, err = buildQueryBinary(); err != nil { // before t.Chdir: it runs go build
			t.Fatal(err)
		}
	}
	base := t.TempDir()
	key := writeKeys(t, base)
	cwd := filepath.Join(base, "cwd")
	// The relative directory file://tmp/arch would have meant, holding nothing: what a typo would
	// have verified as an intact archive.
	if err := os.MkdirAll(filepath.Join(cwd, "tmp", "arch"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwd)
	empty := t.TempDir()
	missing := filepath.Join(base, "missing", "deep")
	// A directory of other things (what /etc is), which the stream must not write into.
	occupied := t.TempDir()
	if err := os.WriteFile(filepath.Join(occupied, "passwd"), []byte("root:x:0:0"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"DATABASE_URL": unreachableDB}
	const absolute = "write file:///tmp/arch"
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"VerifyTwoSlashes", []string{"verify", "archive", "file://tmp/arch", "--public-key", key + ".pub"}, 2, []string{absolute}},
		{"VerifyAllTwoSlashes", []string{"verify", "all", "file://tmp/arch", "--public-key", key + ".pub"}, 2, []string{absolute}},
		{"SearchTwoSlashes", []string{"search", "--archive", "file://tmp/arch"}, 2, []string{absolute}},
		{"ExportTwoSlashes", []string{"export", "--out", filepath.Join(base, "r.csv"), "--archive", "file://tmp/arch"}, 2, []string{absolute}},
		{"PruneTwoSlashes", []string{"partitions", "prune", "--older-than", "13mo", "--dry-run", "--archive", "file://tmp/arch"}, 2, []string{absolute}},
		{"StreamTwoSlashes", []string{"stream", "--archive", "file://new/arch", "--signing-key", key}, 2, []string{"write file:///new/arch"}},
		{"StreamNoArchive", []string{"stream", "--signing-key", key}, 2, []string{"--archive is required"}},
		{"StreamMissingParent", []string{"stream", "--archive", "file://" + missing, "--signing-key", key}, 2,
			[]string{filepath.Dir(missing), "no such file or directory"}},
		{"InitMissingParent", []string{"archive", "init", "file://" + missing}, 2, []string{filepath.Dir(missing), "no such file or directory"}},
		{"StreamIntoOtherFiles", []string{"stream", "--archive", "file://" + occupied, "--signing-key", key}, 2,
			[]string{occupied + " holds passwd, which no archive does: an archive needs a directory of its own"}},
		{"VerifyMissing", []string{"verify", "archive", "file://" + missing, "--public-key", key + ".pub"}, 2, []string{"no such file or directory"}},
		{"SearchMissing", []string{"search", "--archive", "file://" + missing}, 2, []string{"no such file or directory"}},
		{"ExportMissing", []string{"export", "--out", filepath.Join(base, "r.csv"), "--archive", "file://" + missing}, 2, []string{"no such file or directory"}},
		{"VerifyEtc", []string{"verify", "archive", "file:///etc", "--public-key", key + ".pub"}, 2, []string{"file:///etc", "not a pgtrail archive"}},
		{"VerifyEmptyDirectory", []string{"verify", "archive", "file://" + empty, "--public-key", key + ".pub"}, 2, []string{"not a pgtrail archive"}},
		{"VerifyEmptyDirectoryJSON", []string{"verify", "archive", "file://" + empty, "--public-key", key + ".pub", "--json"}, 2, []string{"not a pgtrail archive"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vars := vars
			if c.args[0] == "verify" {
				vars = nil
			}
			code, out, errOut := invRun(t, vars, c.args...)
			line := strings.TrimSpace(errOut)
			if code != c.code || strings.Contains(line, "\n") {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d and one line",
					strings.Join(c.args, " "), code, out, errOut, c.code)
			}
			for _, w := range c.stderr {
				if !strings.Contains(line, w) {
					t.Errorf("pgtrail %s: stderr %q lacks %q", strings.Join(c.args, " "), line, w)
				}
			}
		})
	}
	// pgtrail query, through the companion binary (a DuckDB build: skipped with -short).
	if queryBin != "" {
		qvars := map[string]string{envQueryBinary: queryBin}
		for _, c := range []struct{ url, want string }{{"file://tmp/arch", absolute}, {"file://" + missing, "no such file or directory"}} {
			if code, _, errOut := invRun(t, qvars, "query", c.url, "SELECT 1"); code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("pgtrail query %s: exit %d, stderr %q; want exit 2 and %q", c.url, code, errOut, c.want)
			}
		}
	}
	// Nothing was created: not ./new/arch or ./pgtrail-archive in the working directory, not the
	// missing parent, nothing beside passwd.
	for _, p := range []string{filepath.Join(cwd, "new"), filepath.Join(cwd, "pgtrail-archive"), filepath.Dir(missing),
		filepath.Join(occupied, archive.MarkerKey), filepath.Join(occupied, "events")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after the runs above (%v): a refused URL created it", p, err)
		}
	}

	// A new archive: created by archive init (its parent must exist), or by the stream, each
	// saying so; verify then finds an empty archive, intact, not "not a pgtrail archive".
	initDir := filepath.Join(base, "init-archive")
	code, out, errOut := invRun(t, vars, "archive", "init", "file://"+initDir)
	if code != 0 || !strings.Contains(out, "created "+initDir) {
		t.Fatalf("archive init file://%s: exit %d, stdout %q, stderr %q; want it created and said", initDir, code, out, errOut)
	}
	if code, out, _ := invRun(t, vars, "archive", "init", "file://"+initDir); code != 0 || !strings.Contains(out, "exists") {
		t.Errorf("archive init again: exit %d, stdout %q; want exit 0, exists", code, out)
	}
	code, out, errOut = invRun(t, nil, "verify", "archive", "file://"+initDir, "--public-key", key+".pub")
	if code != 0 || !strings.Contains(out, "intact: 0 entries") || !strings.Contains(errOut, "nothing archived yet") {
		t.Errorf("verify of a new archive: exit %d, stdout %q, stderr %q; want intact, nothing archived yet", code, out, errOut)
	}
	streamDir := filepath.Join(base, "stream-archive")
	code, _, errOut = invRun(t, vars, "stream", "--archive", "file://"+streamDir, "--signing-key", key)
	if !strings.Contains(errOut, "created the archive directory") || !strings.Contains(errOut, streamDir) {
		t.Errorf("stream into a new directory: exit %d, stderr %q; want the creation logged", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(streamDir, archive.MarkerKey)); err != nil {
		t.Errorf("stream did not mark its new archive: %v", err)
	}
}
