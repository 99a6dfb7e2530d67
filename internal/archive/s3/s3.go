// Package s3 stores archive objects in an S3 bucket with Object Lock (archive.Sink for s3:// URLs),
// and sets such a bucket up (InitBucket). Every object is written once, checksummed by the server,
// and locked until now + the retention.
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/pgtrail/pgtrail/internal/archive/internal/object"
)

// Lock modes for Config.LockMode.
const (
	// LockCompliance: nobody, root included, can delete or shorten the lock before it expires.
	LockCompliance = "COMPLIANCE"
	// LockGovernance: principals with s3:BypassGovernanceRetention can remove the lock.
	LockGovernance = "GOVERNANCE"
)

// ClientConfig says how to reach S3.
type ClientConfig struct {
	// Endpoint, when set, is the base URL of an S3-compatible server, addressed path-style.
	Endpoint string
	// Region signs requests; empty means the AWS configuration's region, else us-east-1.
	Region string
	// AccessKey and SecretKey, when both set, replace the default credential chain.
	AccessKey, SecretKey string
}

// Config is how a Sink writes objects.
type Config struct {
	// Retention locks each object until now + Retention; 0 sends no lock (the bucket's default
	// retention, if any, applies).
	Retention time.Duration
	// LockMode is LockCompliance (the default when empty) or LockGovernance.
	LockMode string
	// SSEKMSKeyID, when set, asks for server-side encryption with this KMS key.
	SSEKMSKeyID string
}

// Validate checks the lock mode and retention and normalizes the mode to upper case.
func (c *Config) Validate() error {
	switch strings.ToUpper(c.LockMode) {
	case "", LockCompliance:
		c.LockMode = LockCompliance
	case LockGovernance:
		c.LockMode = LockGovernance
	default:
		return fmt.Errorf("lock mode %q: want %s or %s", c.LockMode, LockCompliance, LockGovernance)
	}
	if c.Retention < 0 {
		return fmt.Errorf("retention %s is negative", c.Retention)
	}
	return nil
}

// NewClient returns an S3 client: the default AWS configuration (environment, shared files,
// instance role) overridden by cfg. It fails when no credentials can be found, so that a
// misconfigured daemon stops at startup rather than retrying forever.
func NewClient(ctx context.Context, cfg ClientConfig) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("S3 static credentials need both an access key and a secret key")
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance role): %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
	}), nil
}

// Sink stores objects in bucket under prefix. It is safe for concurrent use.
type Sink struct {
	client *s3.Client
	bucket string
	prefix string // no leading or trailing '/'; "" for the bucket's root
	cfg    Config
}

// New returns a sink writing to bucket under prefix with client. It does no I/O.
func New(client *s3.Client, bucket, prefix string, cfg Config) (*Sink, error) {
	if bucket == "" {
		return nil, errors.New("S3 sink: no bucket")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("S3 sink: %w", err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := object.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("S3 sink: prefix: %w", err)
		}
	}
	return &Sink{client: client, bucket: bucket, prefix: prefix, cfg: cfg}, nil
}

// Client returns the sink's S3 client.
func (s *Sink) Client() *s3.Client { return s.client }

// Bucket returns the sink's bucket.
func (s *Sink) Bucket() string { return s.bucket }

// ObjectKey returns the S3 key of the archive key (the prefix joined with key).
func (s *Sink) ObjectKey(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// Put stores data under key unless the key exists. The server verifies a SHA-256 checksum of the
// body, and the object is locked for the configured retention.
func (s *Sink) Put(ctx context.Context, key string, data []byte) error {
	if err := object.CheckKey(key); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	exists, err := s.exists(ctx, key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if exists {
		return nil
	}
	sum := sha256.Sum256(data)
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(s.ObjectKey(key)),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ContentType:       aws.String(contentType(key)),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		// A second writer racing us for the key gets 412 instead of adding a version.
		IfNoneMatch: aws.String("*"),
	}
	if s.cfg.Retention > 0 {
		// S3 keeps whole seconds; round up so the lock is never shorter than asked.
		until := time.Now().UTC().Add(s.cfg.Retention).Truncate(time.Second).Add(time.Second)
		in.ObjectLockMode = types.ObjectLockMode(s.cfg.LockMode)
		in.ObjectLockRetainUntilDate = aws.Time(until)
	}
	if s.cfg.SSEKMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(s.cfg.SSEKMSKeyID)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		if httpStatus(err) == http.StatusPreconditionFailed {
			return nil
		}
		return fmt.Errorf("put %s: %w", key, explain(err, s.bucket))
	}
	return nil
}

// Get returns the content of key, or an error wrapping object.ErrNotFound. The SDK checks the
// stored checksum against the body it receives.
func (s *Sink) Get(ctx context.Context, key string) ([]byte, error) {
	return s.get(ctx, key, nil, true)
}

// GetBuffer is Get reading into buf's storage, without the SDK's check of the stored checksum
// (see archive.BufferGetter): that check is a second SHA-256 of every byte, and the caller
// checks the content against a signed digest anyway.
func (s *Sink) GetBuffer(ctx context.Context, key string, buf []byte) ([]byte, error) {
	return s.get(ctx, key, buf, false)
}

// get reads key into buf's storage, checking the stored checksum when checked (Get); unchecked
// reads (GetBuffer) are into buffers the caller reuses (see object.Buffer).
func (s *Sink) get(ctx context.Context, key string, buf []byte, checked bool) ([]byte, error) {
	if err := object.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.ObjectKey(key))}
	var opts []func(*s3.Options)
	if checked {
		in.ChecksumMode = types.ChecksumModeEnabled
	} else {
		// The client's default (when supported) validates every response that has a checksum.
		opts = append(opts, func(o *s3.Options) { o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired })
	}
	out, err := s.client.GetObject(ctx, in, opts...)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("get %s: %w", key, object.ErrNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", key, explain(err, s.bucket))
	}
	defer out.Body.Close()
	if size := aws.ToInt64(out.ContentLength); size > object.MaxSize {
		return nil, fmt.Errorf("get %s: %w", key, object.TooLarge(size))
	}
	// Sized from Content-Length (io.ReadAll would grow and copy its buffer a dozen times for an
	// archive file of a few MiB), with room for bytes.Buffer's last read, which sees EOF. Read
	// no more than the limit allows, whatever the length said.
	n := int(min(max(aws.ToInt64(out.ContentLength), 0), object.MaxSize)) + bytes.MinRead
	b := bytes.NewBuffer(object.Buffer(buf, n, !checked))
	if _, err := b.ReadFrom(io.LimitReader(out.Body, object.MaxSize+1)); err != nil {
		return nil, fmt.Errorf("get %s: read body: %w", key, err)
	}
	if int64(b.Len()) > object.MaxSize {
		return nil, fmt.Errorf("get %s: %w", key, object.TooLarge(int64(b.Len())))
	}
	return b.Bytes(), nil
}

// List returns the keys (without the sink's prefix) that start with prefix, sorted.
func (s *Sink) List(ctx context.Context, prefix string) ([]string, error) {
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(base + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, explain(err, s.bucket))
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), base))
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *Sink) exists(ctx context.Context, key string) (bool, error) {
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.ObjectKey(key)),
	})
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		// HEAD has no body, so a missing bucket also reads as 404 here; PutObject then says which.
		return false, nil
	case httpStatus(err) == http.StatusForbidden:
		// Bad credentials, or a writer allowed to put but not to read or list (AWS answers 403 for
		// a missing key then). PutObject tells them apart, and its If-None-Match still keeps an
		// existing object.
		return false, nil
	default:
		return false, explain(err, s.bucket)
	}
}

func contentType(key string) string {
	switch path.Ext(key) {
	case ".parquet":
		return "application/vnd.apache.parquet"
	case ".json":
		return "application/json"
	default:
		return "application/octet-stream"
	}
}

func isNotFound(err error) bool {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	return errors.As(err, &noKey) || errors.As(err, &notFound)
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// hintError puts a plain-words diagnosis in front of an S3 error.
type hintError struct {
	hint string
	err  error
}

func (e *hintError) Error() string { return e.hint + ": " + e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// explain names the likely cause of the S3 errors an operator can fix.
func explain(err error, bucket string) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidRequest" && mentionsObjectLock(apiErr.ErrorMessage()) {
		return &hintError{fmt.Sprintf("bucket %q does not have Object Lock enabled (pgtrail archive init creates buckets with it)", bucket), err}
	}
	code := errorCode(err)
	switch {
	case credentialCodes[code]:
		return &hintError{"S3 rejected the credentials", err}
	case code == "AccessDenied":
		return &hintError{fmt.Sprintf("access to bucket %q denied", bucket), err}
	case code == "NoSuchBucket":
		return &hintError{fmt.Sprintf("bucket %q does not exist (create it with pgtrail archive init)", bucket), err}
	}
	return err
}

func mentionsObjectLock(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "object lock") || strings.Contains(msg, "objectlock")
}

// IsAuthError reports whether err is S3 refusing the credentials or the access (HTTP 403, or a
// credentials error code): an operator must fix the configuration.
func IsAuthError(err error) bool {
	code := errorCode(err)
	return credentialCodes[code] || code == "AccessDenied" || httpStatus(err) == http.StatusForbidden
}

// credentialCodes are the error codes of S3 rejecting the credentials themselves.
var credentialCodes = map[string]bool{
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "InvalidToken": true, "ExpiredToken": true,
	"InvalidSecurity":    true,
	"XAdminUserNotFound": true, // versitygw's answer for an unknown access key
}
