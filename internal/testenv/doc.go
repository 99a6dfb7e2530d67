// Package testenv gives tests real, throwaway servers without a container engine: a
// PostgreSQL 15 cluster run from the server binaries on PATH, and a versitygw S3 server with Object
// Lock built into .cache/bin by `make tools`.
//
// Postgres hands each test a fresh database on a cluster shared by the test binary; StartPostgres
// starts a dedicated cluster when a test needs other settings or must stop the server. S3 and
// S3Bucket do the same for object storage. StartCluster and StartS3 start the same servers outside
// tests, for make demo and make bench.
//
// Servers stop when the process that started them exits, however it exits: each runs with a
// parent-death signal, and a small watchdog shell, woken by the end of a pipe we hold, stops it if
// it is still running and removes its temporary directory. A TestMain that calls RunMain tears the
// shared servers down in order before the binary exits:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }
//
// The package runs on Linux only (parent-death signals and /proc). Running as root, PostgreSQL runs
// as the "postgres" OS user, which PostgreSQL requires.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// RunMain runs the tests and then stops the shared PostgreSQL cluster and S3 server and removes their
// directories, returning the exit code for os.Exit. A failed teardown turns a passing run into a
// failing one.
func RunMain(m *testing.M) int {
	code := m.Run()
	if err := closeShared(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: tear down shared servers: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func closeShared() error {
	var err error
	shared.mu.Lock()
	if shared.cluster != nil {
		err = errors.Join(err, shared.cluster.Close())
		shared.cluster = nil
	}
	shared.err = errors.New("shared cluster already torn down by RunMain")
	shared.mu.Unlock()

	sharedS3.mu.Lock()
	if sharedS3.server != nil {
		err = errors.Join(err, sharedS3.server.Close())
		sharedS3.server = nil
	}
	sharedS3.err = errors.New("shared S3 server already torn down by RunMain")
	sharedS3.mu.Unlock()
	return err
}
