package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archivetest"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// buildBinary builds pgtrail once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pgtrail-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pgtrail")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// lockedBuffer collects a process's output and may be read while the process still writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemon returns the pgtrail command with args, its stdout and stderr both collected in the
// returned buffer. Still running after timeout, it gets SIGQUIT (the Go runtime prints every
// goroutine's stack and exits), then SIGKILL 10 s later: a daemon that never exits fails its own
// test with its log and where it waited, instead of the whole package at go test's limit with
// neither.
func daemon(t *testing.T, timeout time.Duration, env []string, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = env
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// TestStream_KilledRepeatedly SIGKILLs the stream daemon at random moments, many times, while
// writes go on, then lets it catch up. What must survive: every sealed entry exactly once in
// the archive (no loss, no duplicate), a digest for every data file, the chain intact.
//
// In mode trigger the sealer chains and the stream archives; in mode wal the stream also chains,
// from the slot: a kill between its commit to audit.events and the slot's acknowledgement must not
// chain a change twice, and every change must be chained exactly once.
func TestStream_KilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the daemon many times; skipped with -short")
	}
	for _, mode := range []string{"trigger", "wal"} {
		t.Run(mode, func(t *testing.T) { killRepeatedly(t, mode) })
	}
}

func killRepeatedly(t *testing.T, mode string) {
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	db, url := testdb.New(t)
	if mode == "wal" {
		testdb.Exec(t, db, `SELECT pg_create_logical_replication_slot('pgtrail', 'pgoutput')`)
	}
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int)`)
	testdb.Exec(t, db, `SELECT audit.enable('accounts', '{}', NULL, $1)`, mode)
	archiveURL := "s3://" + bucket + "/killed"
	env := append(os.Environ(), "DATABASE_URL="+url, "AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	args := []string{"stream", "--archive", archiveURL, "--unsigned", "--s3-endpoint", srv.Endpoint, "--retention", "3s",
		"--batch-events", "40", "--batch-age", "30ms", "--seal-interval", "20ms", "--heartbeat", "200ms"}

	ctx, stopWrites := context.WithCancel(context.Background())
	var written, autonomous atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += 4 {
				if _, err := db.Exec(ctx, `INSERT INTO accounts VALUES ($1, 0)`, i); err == nil {
					written.Add(1)
				}
				if _, err := db.Exec(ctx, `UPDATE accounts SET balance = 1 WHERE id = $1`, i); err == nil {
					written.Add(1)
				}
				// An autonomous event (schema 15) in a transaction that rolls back: refused
				// while no slot is made (in mode trigger the daemon creates it, and is killed
				// while creating it more often than not), then recorded all the same.
				if i%10 == w {
					if tx, err := db.Begin(context.Background()); err == nil {
						if _, err := tx.Exec(context.Background(), `SELECT audit.log_event_autonomous('FAILED_LOGIN', 'user', $1, 'FAILURE')`, strconv.Itoa(i)); err == nil {
							autonomous.Add(1)
						}
						tx.Rollback(context.Background())
					}
				}
			}
		}(w)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	const kills = 12
	for k := 0; k < kills; k++ {
		cmd, stderr := daemon(t, time.Minute, env, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if strings.Contains(stderr.String(), "level=ERROR") {
			t.Logf("run %d logged errors:\n%s", k, stderr.String())
		}
	}
	stopWrites()
	wg.Wait()

	// A last run drains everything and exits by itself.
	cmd, out := daemon(t, 3*time.Minute, env, append(args, "--exit-when-caught-up")...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("final catch-up run: %v\n%s", err, out)
	}
	testdb.Seal(t, db)

	sink, err := archive.Open(context.Background(), archiveURL, archive.Options{Endpoint: srv.Endpoint,
		Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	var want []pgtrail.Event
	if err := chain.Read(context.Background(), db, 1, 1<<62, func(e *pgtrail.Event) error {
		want = append(want, *e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := archivetest.Events(t, sink)
	if len(got) != len(want) {
		t.Fatalf("archive holds %d entries, database %d (%d writes)", len(got), len(want), written.Load())
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].EntryHash, want[i].EntryHash) {
			t.Fatalf("entry %d: archive seq %d hash %x, database seq %d hash %x", i, got[i].Seq, got[i].EntryHash, want[i].Seq, want[i].EntryHash)
		}
	}
	st, err := (&archive.Writer{Sink: sink}).Resume(context.Background())
	if err != nil || st.PartialBatchLast != 0 || st.LastSeq != int64(len(want)) {
		t.Fatalf("archive state after catch-up: %+v, %v; want complete through seq %d", st, err, len(want))
	}
	if len(want) < 200 {
		t.Fatalf("only %d entries: the test exercised too little", len(want))
	}
	// Every change exactly once in the trail: an entry per row inserted and per row updated.
	var changes, entries, distinct int
	err = db.QueryRow(context.Background(), `SELECT (SELECT count(*) + count(*) FILTER (WHERE balance = 1) FROM accounts),
		(SELECT count(*) FROM audit.events WHERE resource_type = 'public.accounts'),
		(SELECT count(DISTINCT (action_type, resource_id)) FROM audit.events WHERE resource_type = 'public.accounts')`).Scan(&changes, &entries, &distinct)
	if err != nil || entries != changes || distinct != changes {
		t.Fatalf("%d changes made, %d entries (%d distinct) in the trail (%v)", changes, entries, distinct, err)
	}
	var failed, failedIDs int
	if err := db.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT resource_id) FROM audit.events WHERE action_type = 'FAILED_LOGIN'`).Scan(&failed, &failedIDs); err != nil ||
		failed != int(autonomous.Load()) || failedIDs != failed || (mode == "wal" && failed == 0) {
		t.Fatalf("%d autonomous events logged, %d in the trail (%d distinct) (%v)", autonomous.Load(), failed, failedIDs, err)
	}
	t.Logf("mode %s: %d kills, %d entries chained and archived exactly once (%d autonomous events)", mode, kills, len(want), failed)
}

// TestStream_BadSetup tries the mistakes a user makes at the first start: each must end with a
// clear error and a non-zero exit, and must not create anything in the database.
func TestStream_BadSetup(t *testing.T) {
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	url := testenv.Postgres(t)
	if code, _, errOut := runCLI(t, map[string]string{"DATABASE_URL": url}, "migrate", "up"); code != 0 {
		t.Fatal(errOut)
	}
	replica := testenv.StartPostgres(t, map[string]string{"wal_level": "replica"})
	s3args := []string{"--s3-endpoint", srv.Endpoint, "--region", srv.Region}
	cases := []struct {
		name string
		vars map[string]string
		args []string
		msg  string
	}{
		{"UnknownScheme", map[string]string{"DATABASE_URL": url}, []string{"--archive", "ftp://host/x"}, "ftp"},
		{"MalformedRetention", map[string]string{"DATABASE_URL": url}, []string{"--retention", "forever"}, "--retention"},
		{"BadCredentials", map[string]string{"DATABASE_URL": url, "AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": "wrong"},
			append([]string{"--archive", "s3://" + bucket + "/p"}, s3args...), "SignatureDoesNotMatch"},
		{"MissingBucket", map[string]string{"DATABASE_URL": url, "AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey},
			append([]string{"--archive", "s3://no-such-bucket-pgtrail/p"}, s3args...), "NoSuchBucket"},
		{"WalLevelReplica", map[string]string{"DATABASE_URL": replica.URL("postgres")}, []string{"--archive", "file://" + t.TempDir()}, "wal_level is not logical"},
		{"NotInstalled", map[string]string{"DATABASE_URL": testenv.Postgres(t)}, []string{"--archive", "file://" + t.TempDir()}, "not installed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.vars {
				if strings.HasPrefix(k, "AWS_") {
					t.Setenv(k, v) // the AWS SDK reads its credentials from the process environment
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return c.vars[k] }}
			code := run(ctx, e, append([]string{"stream", "--unsigned"}, c.args...))
			if code == 0 || !strings.Contains(errb.String(), c.msg) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, errb.String(), c.msg)
			}
			if ctx.Err() != nil {
				t.Error("the daemon kept retrying a mistake instead of failing")
			}
		})
	}
}

// TestStream_SIGTERM stops the daemon with SIGTERM while it streams: it must archive what it
// holds, acknowledge it and exit 0, leaving nothing for the next start but what came later.
func TestStream_SIGTERM(t *testing.T) {
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); SELECT audit.enable('t')`)
	dir := t.TempDir()
	cmd, stderr := daemon(t, 2*time.Minute, append(os.Environ(), "DATABASE_URL="+url),
		"stream", "--archive", "file://"+dir, "--unsigned", "--batch-age", "10s", "--seal-interval", "20ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the daemon streams, then write: with --batch-age 10s the entries sit in its batch.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "msg=streaming") {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not start streaming:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	confirmed := func() (lsn string) {
		t.Helper()
		if err := db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'pgtrail'`).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	before := confirmed()
	testdb.Exec(t, db, `INSERT INTO t SELECT generate_series(1, 50)`)
	testdb.Seal(t, db)
	time.Sleep(500 * time.Millisecond) // let the entries reach the daemon's batch
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	sink, err := archive.Open(context.Background(), "file://"+dir, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var head int64
	if err := db.QueryRow(context.Background(), `SELECT seq FROM audit.chain_head`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if got := archivetest.Events(t, sink); int64(len(got)) != head {
		t.Fatalf("archive holds %d entries after SIGTERM, the chain %d", len(got), head)
	}
	// The batch was too young to be flushed before the signal: only the shutdown can have
	// archived and acknowledged it. The walsender applies the daemon's last status message after
	// the daemon has exited, so the slot may take a moment to show it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var moved bool
		err := db.QueryRow(context.Background(), `SELECT $1::pg_lsn > $2::pg_lsn`, confirmed(), before).Scan(&moved)
		if err == nil && moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot position did not move past %s after shutdown (%v): the archived batch was not acknowledged", before, err)
		}
	}
}
