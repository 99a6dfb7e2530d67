package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EnvVersityGW names the environment variable that points at the versitygw binary, overriding the
// search of .cache/bin and PATH.
const EnvVersityGW = "PGTRAIL_VERSITYGW"

// S3Server is a versitygw S3 server (posix backend, with versioning and Object Lock) on 127.0.0.1.
// Its methods are safe for concurrent use.
type S3Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT; clients must use path-style addressing.
	Endpoint string
	// AccessKey and SecretKey are the root account's static credentials.
	AccessKey, SecretKey string
	// Region is the region the server signs for.
	Region string

	dir    string // holds data/, versions/ and versitygw.log
	owned  bool
	shared bool
	port   int
	bin    string

	mu     sync.Mutex
	proc   *process
	reaper *reaper
	closed bool
}

var sharedS3 struct {
	mu     sync.Mutex
	server *S3Server
	err    error
}

// S3 returns the S3 server shared by all tests of the binary, started on first use and stopped, with
// its storage, when the binary exits. It creates no bucket: use S3Bucket for a fresh one. A missing
// versitygw binary fails the test (run `make tools`), so that CI cannot skip the S3 tests silently.
// Tests that Stop it must not run in parallel with tests that use it.
func S3(t testing.TB) *S3Server {
	t.Helper()
	sharedS3.mu.Lock()
	defer sharedS3.mu.Unlock()
	if sharedS3.server == nil && sharedS3.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		s, err := StartS3(ctx, "")
		if err != nil {
			sharedS3.err = err
		} else {
			s.shared = true
			sharedS3.server = s
		}
	}
	if sharedS3.err != nil {
		t.Fatalf("testenv: start shared S3 server: %v", sharedS3.err)
	}
	return sharedS3.server
}

// S3Bucket creates a bucket with Object Lock (and so versioning) enabled, named after the test and
// unique, and returns its name. The bucket is left in place: objects under retention cannot be
// deleted, and the server's storage goes away with the server.
func S3Bucket(t testing.TB, s *S3Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	client, err := s.Client(ctx)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	name := bucketName(t.Name())
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                     aws.String(name),
		ObjectLockEnabledForBucket: aws.Bool(true),
	}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", name, err)
	}
	return name
}

// StartS3 starts a versitygw S3 server for use outside tests (make demo, make bench) and returns once
// it answers requests. It stores buckets in dir/data and object versions in dir/versions and logs to
// dir/versitygw.log; an empty dir means a new temporary directory, removed by Close. The server stops
// when the calling process exits, even if Close is never called.
//
// The binary is $PGTRAIL_VERSITYGW, else .cache/bin/versitygw in the module root found by walking up
// from the working directory, else versitygw on PATH.
func StartS3(ctx context.Context, dir string) (*S3Server, error) {
	bin, err := findVersityGW()
	if err != nil {
		return nil, err
	}
	s := &S3Server{AccessKey: "testaccess", SecretKey: "testsecret123", Region: "us-east-1", bin: bin}
	if dir == "" {
		if dir, err = os.MkdirTemp(os.TempDir(), "pgtrail-s3-"); err != nil {
			return nil, fmt.Errorf("create S3 dir: %w", err)
		}
		s.owned = true
	} else if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("resolve S3 dir: %w", err)
	}
	s.dir = dir
	for _, d := range []string{s.dataDir(), filepath.Join(dir, "versions")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, errors.Join(fmt.Errorf("create S3 dir: %w", err), s.removeOwned())
		}
	}
	ownedDir := ""
	if s.owned {
		ownedDir = dir
	}
	if s.reaper, err = startReaper(ownedDir, s.pidFile(), s.dataDir(), "TERM"); err != nil {
		return nil, errors.Join(err, s.removeOwned())
	}
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			break
		}
		s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.port)
		s.mu.Lock()
		err = s.startLocked(ctx)
		s.mu.Unlock()
		var exited *exitedError
		if err == nil || attempt == startAttempts || !errors.As(err, &exited) {
			break
		}
	}
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// Client returns an aws-sdk-go-v2 client for the server: BaseEndpoint, path-style addressing, the
// root account's static credentials and the server's region. It does no I/O and does not read the
// environment's AWS configuration.
func (s *S3Server) Client(ctx context.Context) (*s3.Client, error) {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	}), nil
}

// Stop stops the server (SIGTERM) to simulate an outage; a second Stop does nothing. Objects and locks
// survive. The shared server is started again at the end of the test if the test left it stopped.
func (s *S3Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	err := s.stopLocked()
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("testenv: stop S3 server: %v", err)
	}
	if s.shared {
		t.Cleanup(func() { s.Start(t) })
	}
}

// Start starts a stopped server again on the same port and directories and returns once it answers
// requests; on a running server it does nothing.
func (s *S3Server) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(ctx); err != nil {
		t.Fatalf("testenv: start S3 server: %v", err)
	}
}

// Close stops the server and removes its directory if StartS3 created it. Closing twice is a no-op.
func (s *S3Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.stopLocked()
	if s.reaper != nil {
		err = errors.Join(err, s.reaper.close())
	}
	return errors.Join(err, s.removeOwned())
}

func (s *S3Server) startLocked(ctx context.Context) error {
	if s.closed {
		return errors.New("S3 server is closed")
	}
	if s.proc != nil && !s.proc.exited() {
		return nil
	}
	logPath := filepath.Join(s.dir, "versitygw.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open S3 server log: %w", err)
	}
	defer logFile.Close()

	// Global flags go before the backend name.
	cmd := exec.Command(s.bin,
		"--port", "127.0.0.1:"+strconv.Itoa(s.port), "--region", s.Region, "--quiet",
		"posix", "--versioning-dir", filepath.Join(s.dir, "versions"), s.dataDir())
	cmd.Dir = s.dir
	cmd.Env = append(filterEnv(os.Environ(), "VGW_", "ROOT_ACCESS_KEY", "ROOT_SECRET_ACCESS_KEY"),
		"ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p, err := startProcess(cmd, s.pidFile())
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	s.proc = p
	if err := s.waitReady(ctx); err != nil {
		return errors.Join(err, p.stop(syscall.SIGKILL, stopTimeout))
	}
	return nil
}

// PID is the server process's id, or 0 while it is stopped: benchmarks read its CPU time, which
// a co-located server takes from the cores its clients run on.
func (s *S3Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

func (s *S3Server) stopLocked() error {
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop(syscall.SIGTERM, stopTimeout)
	s.proc = nil
	_ = os.Remove(s.pidFile())
	return err
}

// waitReady polls ListBuckets until the server answers it, it exits, or the deadline passes.
func (s *S3Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client, err := s.Client(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, time.Second)
		_, err := client.ListBuckets(attemptCtx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		attemptCancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.proc.done:
			return &exitedError{what: "versitygw", err: s.proc.err, log: logTail(filepath.Join(s.dir, "versitygw.log"))}
		case <-ctx.Done():
			return fmt.Errorf("wait for versitygw on port %d: %w (last error: %v)\n%s", s.port, ctx.Err(), err, logTail(filepath.Join(s.dir, "versitygw.log")))
		case <-tick.C:
		}
	}
}

func (s *S3Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *S3Server) pidFile() string { return filepath.Join(s.dir, "versitygw.pid") }

func (s *S3Server) removeOwned() error {
	if !s.owned {
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove S3 dir: %w", err)
	}
	return nil
}

// findVersityGW locates the versitygw binary; see StartS3 for the search order.
func findVersityGW() (string, error) {
	if p := os.Getenv(EnvVersityGW); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("versitygw from %s: %w", EnvVersityGW, err)
		}
		return p, nil
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".cache", "bin", "versitygw")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("versitygw not found in $%s, .cache/bin of the module or PATH: run `make tools` to build it into .cache/bin", EnvVersityGW)
}

// bucketName derives a DNS-safe bucket name (3 to 63 lowercase letters, digits and hyphens) from a
// test name, unique across runs and parallel tests.
func bucketName(testName string) string {
	return "t-" + sanitizeName(testName, '-', 63-len("t-")-len("-")-8) + "-" + randomHex(4)
}
