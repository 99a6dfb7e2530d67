package s3_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgtrail/pgtrail/internal/archive"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
	"github.com/pgtrail/pgtrail/internal/archive/sinktest"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// setup returns a sink on a fresh Object Lock bucket of the shared server, under a prefix, and a
// raw client to look at what it stored.
func setup(t *testing.T, cfg s3sink.Config) (*s3sink.Sink, *awss3.Client) {
	t.Helper()
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	client := newClient(t, srv, srv.AccessKey, srv.SecretKey)
	s, err := s3sink.New(client, bucket, "/archive/pgtrail/", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, client
}

func newClient(t *testing.T, srv *testenv.S3Server, access, secret string) *awss3.Client {
	t.Helper()
	client, err := s3sink.NewClient(context.Background(), s3sink.ClientConfig{Endpoint: srv.Endpoint,
		Region: srv.Region, AccessKey: access, SecretKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func TestSink_Conformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) archive.Sink {
		s, _ := setup(t, s3sink.Config{Retention: time.Hour})
		return s
	})
}

func TestSink_PutLocksObject(t *testing.T) {
	tests := []struct {
		name, mode string
		wantMode   types.ObjectLockRetentionMode
	}{
		{"DefaultCompliance", "", types.ObjectLockRetentionModeCompliance},
		{"Governance", "governance", types.ObjectLockRetentionModeGovernance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			const retention = 48 * time.Hour
			s, client := setup(t, s3sink.Config{Retention: retention, LockMode: tt.mode})
			data := []byte("locked content")
			before := time.Now()
			if err := s.Put(ctx, "events/x.parquet", data); err != nil {
				t.Fatal(err)
			}
			key := aws.String(s.ObjectKey("events/x.parquet"))
			if *key != "archive/pgtrail/events/x.parquet" {
				t.Errorf("ObjectKey = %q, want the prefix applied", *key)
			}
			ret, err := client.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String(s.Bucket()), Key: key})
			if err != nil {
				t.Fatalf("GetObjectRetention: %v", err)
			}
			until := aws.ToTime(ret.Retention.RetainUntilDate)
			if ret.Retention.Mode != tt.wantMode || until.Before(before.Add(retention)) || until.After(time.Now().Add(retention+time.Minute)) {
				t.Errorf("retention = %s until %s, want %s until about now+%s", ret.Retention.Mode, until, tt.wantMode, retention)
			}
			head, err := client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.Bucket()), Key: key,
				ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if got := aws.ToString(head.ChecksumSHA256); got != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Errorf("stored SHA-256 checksum = %q, want the body's", got)
			}
		})
	}
}

func TestSink_DeleteRefused(t *testing.T) {
	// Tried: deleting the locked object version, also with governance bypass. Must survive: the
	// server refuses with 403 and the object still reads back intact.
	ctx := context.Background()
	s, client := setup(t, s3sink.Config{Retention: time.Hour})
	if err := s.Put(ctx, "digests/r/0.json", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	key := aws.String(s.ObjectKey("digests/r/0.json"))
	head, err := client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.Bucket()), Key: key})
	if err != nil || head.VersionId == nil {
		t.Fatalf("HeadObject = %v, %v; want a version id", head, err)
	}
	_, err = client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.Bucket()), Key: key,
		VersionId: head.VersionId, BypassGovernanceRetention: aws.Bool(true)})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Errorf("DeleteObject of the locked version = %v, want 403", err)
	}
	if got, err := s.Get(ctx, "digests/r/0.json"); err != nil || string(got) != `{"v":1}` {
		t.Errorf("Get after refused delete = %q, %v", got, err)
	}
}

func TestSink_Outage(t *testing.T) {
	// Tried: Put while the S3 server is down. Must survive: a retryable error, nothing half
	// written, and a retry after the server is back succeeds with the full content.
	ctx := context.Background()
	srv := testenv.S3(t)
	s, _ := setup(t, s3sink.Config{Retention: time.Hour})
	srv.Stop(t)
	start := time.Now()
	err := s.Put(ctx, "events/outage.parquet", []byte("during outage"))
	if err == nil {
		t.Fatal("Put with the server stopped = nil, want an error")
	}
	if !archive.IsRetryable(err) || !strings.Contains(err.Error(), "events/outage.parquet") {
		t.Errorf("Put error %q: IsRetryable = %v, want true and the key named", err, archive.IsRetryable(err))
	}
	t.Logf("Put failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if _, err := s.Get(ctx, "events/outage.parquet"); !archive.IsRetryable(err) {
		t.Errorf("Get with the server stopped: IsRetryable(%v) = false", err)
	}
	srv.Start(t)
	if err := s.Put(ctx, "events/outage.parquet", []byte("during outage")); err != nil {
		t.Fatalf("retried Put after restart: %v", err)
	}
	if got, err := s.Get(ctx, "events/outage.parquet"); err != nil || string(got) != "during outage" {
		t.Errorf("Get after retried Put = %q, %v", got, err)
	}
}

func TestSink_PermanentErrors(t *testing.T) {
	// Tried: writing with bad credentials, to a missing bucket, and with locks to a bucket
	// without Object Lock. Must survive: a clear error that IsRetryable rejects, so a daemon stops
	// at once instead of retrying forever. (versitygw keeps the object it refused for lack of
	// Object Lock, so "nothing stored" is checked for the other cases only.)
	ctx := context.Background()
	srv := testenv.S3(t)
	good := newClient(t, srv, srv.AccessKey, srv.SecretKey)
	bucket := testenv.S3Bucket(t, srv)
	noLock := strings.Replace(bucket, "t-", "nolock-", 1)
	if _, err := good.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(noLock)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *awss3.Client
		bucket string
		want   string
	}{
		{"WrongSecret", newClient(t, srv, srv.AccessKey, "wrong-secret"), bucket, "S3 rejected the credentials"},
		{"UnknownAccessKey", newClient(t, srv, "nobody", "wrong-secret"), bucket, "S3 rejected the credentials"},
		{"MissingBucket", good, "no-such-bucket-pgtrail", `bucket "no-such-bucket-pgtrail" does not exist`},
		{"BucketWithoutObjectLock", good, noLock, "does not have Object Lock enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := s3sink.New(tt.client, tt.bucket, "p", s3sink.Config{Retention: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(ctx, "events/a.parquet", []byte("x"))
			if err == nil || archive.IsRetryable(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Put = %v (retryable %v), want a permanent error containing %q", err, archive.IsRetryable(err), tt.want)
			}
			t.Logf("Put: %v", err)
			if _, err := s.List(ctx, ""); tt.name != "BucketWithoutObjectLock" && (err == nil || archive.IsRetryable(err)) {
				t.Errorf("List = %v, want a permanent error", err)
			}
			if tt.name == "BucketWithoutObjectLock" {
				return
			}
			_, err = good.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(tt.bucket), Key: aws.String("p/events/a.parquet")})
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) {
				t.Errorf("HeadObject after the failed Put = %v, want not found", err)
			}
		})
	}
}

func TestNew_Validate(t *testing.T) {
	srv := testenv.S3(t)
	client := newClient(t, srv, srv.AccessKey, srv.SecretKey)
	tests := []struct {
		name, bucket, prefix string
		cfg                  s3sink.Config
		want                 string
	}{
		{"NoBucket", "", "", s3sink.Config{}, "no bucket"},
		{"BadLockMode", "b", "", s3sink.Config{LockMode: "LEGAL_HOLD"}, "lock mode"},
		{"NegativeRetention", "b", "", s3sink.Config{Retention: -time.Second}, "negative"},
		{"PrefixEscapes", "b", "a/../b", s3sink.Config{}, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s3sink.New(client, tt.bucket, tt.prefix, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSink_PutSendsEncryptionAndChecksum(t *testing.T) {
	// versitygw accepts and ignores SSE headers, so check what the sink sends.
	ctx := context.Background()
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	var sent http.Header
	client, _ := srv.Client(ctx)
	client = awss3.New(client.Options(), func(o *awss3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("capture",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if req, ok := in.Request.(*smithyhttp.Request); ok && req.Method == http.MethodPut {
						sent = req.Header.Clone()
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	})
	s, err := s3sink.New(client, bucket, "", s3sink.Config{Retention: time.Hour, SSEKMSKeyID: "arn:aws:kms:us-east-1:111122223333:key/k1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "digests/r/0.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"X-Amz-Server-Side-Encryption":                "aws:kms",
		"X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id": "arn:aws:kms:us-east-1:111122223333:key/k1",
		"X-Amz-Object-Lock-Mode":                      "COMPLIANCE",
		"X-Amz-Checksum-Sha256":                       "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=",
		"If-None-Match":                               "*",
		"Content-Type":                                "application/json",
	}
	for h, v := range want {
		if got := sent.Get(h); got != v {
			t.Errorf("PutObject header %s = %q, want %q", h, got, v)
		}
	}
	if sent.Get("X-Amz-Object-Lock-Retain-Until-Date") == "" {
		t.Errorf("PutObject sent no retain-until date")
	}
}
