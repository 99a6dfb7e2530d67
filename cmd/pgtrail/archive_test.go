package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// awsEnv points the AWS default credential chain at the test server's account and away from any
// configuration of the machine.
func awsEnv(t *testing.T, srv *testenv.S3Server, secret string) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/pgtrail-test")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/pgtrail-test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func TestCLI_ArchiveInit(t *testing.T) {
	srv := testenv.S3(t)
	awsEnv(t, srv, srv.SecretKey)
	existing := testenv.S3Bucket(t, srv)
	bucket := strings.Replace(existing, "t-", "init-", 1)
	noLock := strings.Replace(existing, "t-", "nolock-", 1)
	client, _ := srv.Client(context.Background())
	if _, err := client.CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String(noLock)}); err != nil {
		t.Fatal(err)
	}
	ep := []string{"--s3-endpoint", srv.Endpoint}
	url := "s3://" + bucket + "/audit"
	occupied := t.TempDir()
	if err := os.WriteFile(filepath.Join(occupied, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{append([]string{"archive", "init", url}, ep...), 0, "bucket " + bucket + ": created with Object Lock",
			"warning: the S3 server does not implement lifecycle configuration (501 NotImplemented)"},
		{append([]string{"archive", "init", url, "--retention", "30d", "--glacier-after", "7d", "--lock-mode", "governance"}, ep...), 0,
			"default retention: GOVERNANCE, 30 days", "warning:"},
		{append([]string{"archive", "init", "s3://" + noLock + "/audit"}, ep...), 1, "", "Object Lock is not enabled"},
		{append([]string{"archive", "init", "s3://" + existing}, ep...), 0, "exists, Object Lock enabled", ""},
		{[]string{"archive", "init", "--s3-endpoint", "http://127.0.0.1:1", url}, 2, "", "connection refused"},
		// A local archive is a directory of its own (TestCLI_ArchiveURLs makes one).
		{[]string{"archive", "init", "file://" + occupied}, 1, "", "holds notes.txt, which no archive does"},
		{[]string{"archive", "init", "file://tmp/archive"}, 2, "", "write file:///tmp/archive"},
		{[]string{"archive", "init", "gs://bucket"}, 2, "", "want file:///absolute/path or s3://bucket"},
		{[]string{"archive", "init", url, "--retention", "7x"}, 2, "", "--retention"},
		{[]string{"archive", "init", url, "--retention", "12h"}, 2, "", "at least one day"},
		{[]string{"archive", "init", url, "--glacier-after", "8y"}, 2, "", "must be shorter than --retention"},
		{[]string{"archive", "init", url, "--lock-mode", "LEGAL_HOLD"}, 2, "", "--lock-mode"},
		{[]string{"archive", "init"}, 2, "", "expected: archive init s3://bucket/prefix"},
		{[]string{"archive"}, 2, "", "expected: archive init"},
		{[]string{"archive", "destroy"}, 2, "", `unknown archive command "destroy"`},
	}
	for _, s := range steps {
		code, out, errOut := runCLI(t, nil, s.args...)
		if code != s.code || !strings.Contains(out, s.inStdout) || !strings.Contains(errOut, s.inStderr) {
			t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(s.args, " "), code, out, errOut, s.code, s.inStdout, s.inStderr)
		}
	}

	// JSON carries the warning as a field.
	code, out, _ := runCLI(t, nil, append([]string{"archive", "init", url, "--json"}, ep...)...)
	var rep struct {
		URL           string   `json:"url"`
		Created       bool     `json:"created"`
		RetentionDays int      `json:"default_retention_days"`
		GlacierDays   int      `json:"glacier_after_days"`
		ExpireDays    int      `json:"expire_after_days"`
		Lifecycle     bool     `json:"lifecycle_applied"`
		Warnings      []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("archive init --json: exit %d, %v: %s", code, err, out)
	}
	if rep.URL != url || rep.Created || rep.RetentionDays != 7*366 || rep.GlacierDays != 90 || rep.ExpireDays != 7*366+1 ||
		rep.Lifecycle || len(rep.Warnings) != 1 {
		t.Errorf("archive init --json = %+v", rep)
	}

	// The bucket takes locked objects, as pgtrail stream writes them.
	sink, err := archive.Open(context.Background(), url, archive.Options{Endpoint: srv.Endpoint, Retention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(context.Background(), "events/probe", []byte("x")); err != nil {
		t.Errorf("Put with Object Lock into the initialized bucket: %v", err)
	}
}

func TestCLI_ArchiveInitBadCredentials(t *testing.T) {
	// Tried: init with a wrong secret key. Must survive: no bucket is created, and the command
	// says it could not run (exit 2), naming the refusal.
	srv := testenv.S3(t)
	awsEnv(t, srv, "wrong-secret")
	bucket := strings.Replace(testenv.S3Bucket(t, srv), "t-", "denied-", 1)
	code, out, errOut := runCLI(t, nil, "archive", "init", "s3://"+bucket, "--s3-endpoint", srv.Endpoint)
	if code != 2 || !strings.Contains(errOut, "access denied") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 naming the refusal", code, out, errOut)
	}
	client, _ := srv.Client(context.Background())
	if _, err := client.HeadBucket(context.Background(), &awss3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		t.Errorf("bucket %s was created with bad credentials", bucket)
	}
}

// TestPlural: counts read as English ("1 days", "1 batches" were printed).
func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n         int64
		one, many string
		want      string
	}{{0, "day", "days", "0 days"}, {1, "day", "days", "1 day"}, {2, "batch", "batches", "2 batches"}, {1, "batch", "batches", "1 batch"}} {
		if got := plural(c.n, c.one, c.many); got != c.want {
			t.Errorf("plural(%d, %q, %q) = %q, want %q", c.n, c.one, c.many, got, c.want)
		}
	}
}
