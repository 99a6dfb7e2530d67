package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(RunMain(m)) }

// connect opens a connection that is closed at test cleanup.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	urlA, urlB := Postgres(t), Postgres(t)
	a, b := connect(t, urlA), connect(t, urlB)

	dbA, dbB := queryString(t, a, "SELECT current_database()"), queryString(t, b, "SELECT current_database()")
	if dbA == dbB {
		t.Fatalf("two calls gave the same database %q", dbA)
	}
	if portA, portB := queryString(t, a, "SHOW port"), queryString(t, b, "SHOW port"); portA != portB {
		t.Errorf("databases on different clusters: ports %s and %s", portA, portB)
	}
	for setting, want := range map[string]string{"wal_level": "logical", "server_version_num": "15", "is_superuser": "on"} {
		if got := queryString(t, a, "SHOW "+setting); !strings.HasPrefix(got, want) {
			t.Errorf("SHOW %s = %q, want %q", setting, got, want)
		}
	}

	if _, err := a.Exec(t.Context(), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')"); err != nil {
		t.Fatalf("create and fill a table: %v", err)
	}
	if got := queryString(t, a, "SELECT v FROM t WHERE id = 1"); got != "one" {
		t.Errorf("read back %q, want %q", got, "one")
	}
	if n := queryString(t, b, "SELECT count(*)::text FROM pg_tables WHERE tablename = 't'"); n != "0" {
		t.Errorf("table of database %s visible in %s", dbA, dbB)
	}
}

func TestPostgres_DropsDatabaseAtCleanup(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("Inner", func(t *testing.T) {
		name = queryString(t, connect(t, Postgres(t)), "SELECT current_database()")
	})
	admin := connect(t, PostgresCluster(t).URL("postgres"))
	var exists bool
	if err := admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestPostgres_ExternalServer(t *testing.T) {
	// Points the override at the shared cluster: the behaviour under test is only what Postgres does
	// with the URL it is given.
	t.Setenv(EnvDatabaseURL, PostgresCluster(t).URL("postgres"))
	conn := connect(t, Postgres(t))
	if db := queryString(t, conn, "SELECT current_database()"); !strings.HasPrefix(db, "t_testpostgres_externalserver_") {
		t.Errorf("current_database() = %q, want a fresh per-test database", db)
	}
	if c := PostgresCluster(t); c.external == "" {
		t.Errorf("PostgresCluster ignores %s", EnvDatabaseURL)
	}
}

func TestCluster_Restart(t *testing.T) {
	// Not parallel: it restarts the cluster other tests use.
	c := PostgresCluster(t)
	url := Postgres(t)
	before := connect(t, url)
	if _, err := before.Exec(t.Context(), "CREATE TABLE t AS SELECT 42 AS v"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	c.Restart(t)
	t.Logf("restart took %s", time.Since(start))

	if err := before.Ping(t.Context()); err == nil {
		t.Error("a connection from before the restart still works; the server did not restart")
	}
	if got := queryString(t, connect(t, url), "SELECT v::text FROM t"); got != "42" {
		t.Errorf("after restart read %q, want 42", got)
	}
}

func TestStartPostgres(t *testing.T) {
	t.Parallel()
	c := StartPostgres(t, map[string]string{"wal_level": "replica", "application_name": "it's quoted"})
	conn := connect(t, c.URL("postgres"))
	for setting, want := range map[string]string{
		"wal_level":        "replica", // the caller's setting wins over the default
		"fsync":            "off",     // test clusters trade durability for speed
		"max_connections":  "200",
		"application_name": "it's quoted",
	} {
		if got := queryString(t, conn, "SHOW "+setting); got != want {
			t.Errorf("SHOW %s = %q, want %q", setting, got, want)
		}
	}
	if shared := PostgresCluster(t); shared.port == c.port {
		t.Errorf("dedicated cluster shares port %d with the shared cluster", c.port)
	}

	c.Stop(t)
	c.Stop(t) // a second Stop is a no-op
	if conn, err := pgx.Connect(t.Context(), c.URL("postgres")); err == nil {
		conn.Close(t.Context())
		t.Fatal("connected to a stopped cluster")
	}
	c.Start(t)
	if got := queryString(t, connect(t, c.URL("postgres")), "SELECT 'up'"); got != "up" {
		t.Errorf("after Start got %q", got)
	}
}

// s3Client returns a client for the shared server and a fresh Object Lock bucket on it.
func s3Client(t *testing.T) (*s3.Client, string) {
	t.Helper()
	srv := S3(t)
	client, err := srv.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return client, S3Bucket(t, srv)
}

func TestS3Bucket_ObjectLock(t *testing.T) {
	t.Parallel()
	client, bucket := s3Client(t)

	lock, err := client.GetObjectLockConfiguration(t.Context(), &s3.GetObjectLockConfigurationInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("get object lock configuration: %v", err)
	}
	if lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Fatalf("bucket %s has no object lock: %+v", bucket, lock.ObjectLockConfiguration)
	}

	put, err := client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket:                    &bucket,
		Key:                       aws.String("segment"),
		Body:                      strings.NewReader("audit"),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(time.Now().Add(3 * time.Second)),
	})
	if err != nil {
		t.Fatalf("put locked object: %v", err)
	}
	if aws.ToString(put.VersionId) == "" {
		t.Fatal("put returned no VersionId")
	}

	_, err = client.DeleteObject(t.Context(), &s3.DeleteObjectInput{
		Bucket:                    &bucket,
		Key:                       aws.String("segment"),
		VersionId:                 put.VersionId,
		BypassGovernanceRetention: aws.Bool(true),
	})
	var resp *awshttp.ResponseError
	if !errors.As(err, &resp) || resp.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("delete of a version under COMPLIANCE retention: got %v, want 403", err)
	}
}

func TestS3Server_StopStart(t *testing.T) {
	// Not parallel: it stops the server other tests use.
	client, bucket := s3Client(t)
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatal(err)
	}

	srv := S3(t)
	if pid := srv.PID(); pid <= 0 || syscall.Kill(pid, 0) != nil {
		t.Errorf("PID of the running server = %d, not a live process", pid)
	}
	srv.Stop(t)
	if pid := srv.PID(); pid != 0 {
		t.Errorf("PID of the stopped server = %d, want 0", pid)
	}
	_, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("k")}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if err == nil {
		t.Fatal("request to a stopped server succeeded")
	}
	srv.Start(t)
	if _, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("k")}); err != nil {
		t.Errorf("object lost across stop and start: %v", err)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("VeryLongSubtestName/", 10)
	dbName := regexp.MustCompile(`^t_[a-z0-9_]+_[0-9a-f]{8}$`)
	bucket := regexp.MustCompile(`^t-[a-z0-9-]+-[0-9a-f]{8}$`)
	for _, tc := range []struct {
		name     string
		testName string
		wantDB   string // prefix before the random suffix
	}{
		{"Simple", "TestFoo", "t_testfoo_"},
		{"Subtest", "TestFoo/Bar_baz", "t_testfoo_bar_baz_"},
		{"Punctuation", "TestX/#01/ä€!", "t_testx_01_"},
		{"Empty", "", "t_x_"},
		{"Long", long, "t_" + strings.TrimRight(strings.Repeat("verylongsubtestname_", 3)[:52], "_") + "_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := databaseName(tc.testName)
			if len(db) > 63 || !dbName.MatchString(db) || !strings.HasPrefix(db, tc.wantDB) {
				t.Errorf("databaseName(%q) = %q (%d bytes), want %s<8 hex> within 63 bytes", tc.testName, db, len(db), tc.wantDB)
			}
			b := bucketName(tc.testName)
			if len(b) < 3 || len(b) > 63 || !bucket.MatchString(b) || strings.Contains(b, "--") {
				t.Errorf("bucketName(%q) = %q (%d bytes), not a DNS-safe bucket name", tc.testName, b, len(b))
			}
		})
	}
	if databaseName("T") == databaseName("T") {
		t.Error("two databases for the same test got the same name")
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, conn, want string }{
		{"URL", "postgres://u:p@h:5/old?sslmode=disable", "postgres://u:p@h:5/new?sslmode=disable"},
		{"URLWithoutDatabase", "postgresql://h", "postgresql://h/new"},
		{"KeywordValue", "host=h dbname=old", "host=h dbname=old dbname='new'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withDatabase(tc.conn, "new"); got != tc.want {
				t.Errorf("withDatabase(%q) = %q, want %q", tc.conn, got, tc.want)
			}
		})
	}
}

// helperEnv makes the test binary run TestServersStopWhenBinaryDies_Helper for real.
const helperEnv = "PGTRAIL_TESTCONTAINERS_HELPER"

// TestServersStopWhenBinaryDies kills (SIGKILL, so no Cleanup, no RunMain) a test binary that started
// the shared servers, and checks that the servers stop and their directories go away.
func TestServersStopWhenBinaryDies(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestServersStopWhenBinaryDies_Helper$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type server struct {
		pid    int
		dir    string
		marker string
	}
	var servers []server
	scanner := bufio.NewScanner(stdout)
	for scanner.Scan() {
		var s server
		if _, err := fmt.Sscanf(scanner.Text(), "SERVER %d %s %s", &s.pid, &s.dir, &s.marker); err == nil {
			servers = append(servers, s)
		}
		if scanner.Text() == "READY" {
			break
		}
	}
	if len(servers) != 2 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper reported %d servers, want 2", len(servers))
	}
	if !runningAs(servers[0].pid, servers[0].marker) {
		t.Fatalf("postgres pid %d not running before the kill", servers[0].pid)
	}

	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	for _, s := range servers {
		for runningAs(s.pid, s.marker) || exists(s.dir) {
			if time.Since(killed) > 30*time.Second {
				t.Fatalf("30s after the test binary died: server pid %d running=%t, dir %s exists=%t",
					s.pid, runningAs(s.pid, s.marker), s.dir, exists(s.dir))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("servers stopped and directories removed %s after the kill", time.Since(killed))
}

func TestServersStopWhenBinaryDies_Helper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("runs only as the child of TestServersStopWhenBinaryDies")
	}
	c, s := PostgresCluster(t), S3(t)
	fmt.Printf("SERVER %d %s %s\n", c.proc.cmd.Process.Pid, c.dir, c.dataDir)
	fmt.Printf("SERVER %d %s %s\n", s.proc.cmd.Process.Pid, s.dir, s.dataDir())
	fmt.Println("READY")
	time.Sleep(time.Minute) // killed long before
}

// runningAs reports whether pid is alive and has marker among its arguments (a zombie has none).
func runningAs(pid int, marker string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		if arg == marker {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
