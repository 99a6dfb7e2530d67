package hostile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The pgtrail binary, built once per test binary, and run as a user runs it.

// unreachableDB is a database URL nothing answers on: for CLI runs that must fail before they
// connect.
const unreachableDB = "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"

// dataLimit is the data segment limit (RLIMIT_DATA, KiB) of a bounded CLI run: a Go program
// that reads without end dies of "out of memory" there in a moment, while pgtrail's ordinary
// runs stay far below it.
const dataLimit = 256 << 10

// buildBinary builds pgtrail once per test binary, and pgtrail-query (DuckDB, cgo) beside it on
// first use, where pgtrail query looks for it.
var (
	binDir      string
	buildBinary = sync.OnceValues(func() (string, error) { return goBuild("pgtrail") })
	buildQuery  = sync.OnceValues(func() (string, error) { return goBuild("pgtrail-query") })
)

func goBuild(name string) (string, error) {
	bin := filepath.Join(binDir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = "../.." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v: %s", name, err, out)
	}
	return bin, nil
}

// cliRun is one run of the pgtrail binary.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
	limited        bool // run under the data limit
}

func (r cliRun) String() string {
	return fmt.Sprintf("pgtrail %s: exit %d, stdout %.3000q, stderr %.1000q", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runOpts say how the binary is run.
type runOpts struct {
	dbURL   string        // DATABASE_URL; unreachableDB when empty
	noDB    bool          // no DATABASE_URL at all (verify archive then reads no database)
	limited bool          // under the data limit
	timeout time.Duration // 2 minutes when 0
}

// command returns the pgtrail binary's command with args, run in the world's directory: killed
// when ctx ends, with SIGQUIT (the Go runtime prints its goroutines and exits), then SIGKILL
// 10 s later.
func (w *world) command(ctx context.Context, o runOpts, args ...string) *exec.Cmd {
	w.t.Helper()
	bin, err := buildBinary()
	if err != nil {
		w.t.Fatal(err)
	}
	name, argv := bin, args
	if o.limited {
		name, argv = "/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -d %d && exec "$0" "$@"`, dataLimit), bin}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Dir = w.dir
	// The PG* variables point nowhere, so that nothing reaches a server by default.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.dir, "PGHOST=127.0.0.1", "PGPORT=1", "PGCONNECT_TIMEOUT=2"}
	switch {
	case o.dbURL != "":
		cmd.Env = append(cmd.Env, "DATABASE_URL="+o.dbURL)
	case !o.noDB:
		cmd.Env = append(cmd.Env, "DATABASE_URL="+unreachableDB)
	}
	return cmd
}

// run runs the pgtrail binary with args and fails the test if it is still running after its
// timeout (2 minutes by default).
func (w *world) run(o runOpts, args ...string) cliRun {
	w.t.Helper()
	if o.timeout == 0 {
		o.timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := w.command(ctx, o, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		w.t.Fatalf("pgtrail %s: still running after %s; stderr %s", strings.Join(args, " "), o.timeout, stderr.String())
	}
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		w.t.Fatalf("pgtrail %s: %v", strings.Join(args, " "), err)
	}
	return cliRun{args: args, code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), limited: o.limited}
}

// daemon starts `pgtrail stream` on the world's slot with args, waits until it holds the slot,
// and returns the function that stops it with SIGTERM and fails the test unless it exits 0.
func (w *world) daemon(args ...string) (stop func()) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	w.t.Cleanup(cancel)
	log, err := os.Create(w.path("stream.log"))
	if err != nil {
		w.t.Fatal(err)
	}
	defer log.Close()
	cmd := w.command(ctx, runOpts{dbURL: w.dbURL()}, append([]string{"stream", "--slot", w.slotName()}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	logged := func() string { data, _ := os.ReadFile(log.Name()); return string(data) }
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if w.count(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active`, w.slot) == 1 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			w.t.Fatalf("pgtrail stream did not take the slot within a minute:\n%s", logged())
		}
	}
	return func() {
		w.t.Helper()
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			w.t.Fatalf("pgtrail stream after SIGTERM: %v\n%s", err, logged())
		}
	}
}
