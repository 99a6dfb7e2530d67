package s3

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// InitConfig is how InitBucket sets a bucket up.
type InitConfig struct {
	// Region places a new bucket; empty or us-east-1 sends no location constraint.
	Region string
	// Retention is the bucket's default retention and the age at which lifecycle expires objects.
	Retention time.Duration
	// LockMode is LockCompliance (the default when empty) or LockGovernance.
	LockMode string
	// GlacierAfter moves objects under the prefix to S3 Glacier at this age; 0 keeps them in
	// S3 Standard.
	GlacierAfter time.Duration
}

// InitResult reports what InitBucket did.
type InitResult struct {
	Bucket        string   `json:"bucket"`
	Prefix        string   `json:"prefix"`
	Created       bool     `json:"created"`
	LockMode      string   `json:"lock_mode"`
	RetentionDays int32    `json:"default_retention_days"`
	GlacierDays   int32    `json:"glacier_after_days"`
	ExpireDays    int32    `json:"expire_after_days"`
	Lifecycle     bool     `json:"lifecycle_applied"`
	Warnings      []string `json:"warnings"`
}

// InitBucket makes bucket ready for an archive under prefix: it creates the bucket with Object
// Lock, or checks that an existing one has Object Lock enabled; it sets the default retention and
// the lifecycle rules of LifecycleRules, keeping other rules of the bucket. A server that does not
// implement lifecycle configuration (501) is reported in Warnings, not as an error.
func InitBucket(ctx context.Context, client *s3.Client, bucket, prefix string, cfg InitConfig) (*InitResult, error) {
	lock := Config{Retention: cfg.Retention, LockMode: cfg.LockMode}
	if err := lock.Validate(); err != nil {
		return nil, err
	}
	if cfg.Retention <= 0 {
		return nil, errors.New("retention must be positive")
	}
	if cfg.GlacierAfter < 0 {
		return nil, errors.New("glacier-after must not be negative")
	}
	prefix = strings.Trim(prefix, "/")
	res := &InitResult{Bucket: bucket, Prefix: prefix, LockMode: lock.LockMode, RetentionDays: days(cfg.Retention),
		Warnings: []string{}}

	created, err := ensureBucket(ctx, client, bucket, cfg.Region)
	if err != nil {
		return nil, err
	}
	res.Created = created
	if _, err := client.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
		Bucket: aws.String(bucket),
		ObjectLockConfiguration: &types.ObjectLockConfiguration{
			ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{
				Mode: types.ObjectLockRetentionMode(lock.LockMode),
				Days: aws.Int32(res.RetentionDays),
			}},
		},
	}); err != nil {
		return nil, fmt.Errorf("set default retention of bucket %s: %w", bucket, explain(err, bucket))
	}

	rules := LifecycleRules(prefix, cfg.GlacierAfter, cfg.Retention)
	for _, r := range rules.Rules {
		for _, t := range r.Transitions {
			res.GlacierDays = aws.ToInt32(t.Days)
		}
		if r.Expiration != nil {
			res.ExpireDays = aws.ToInt32(r.Expiration.Days)
		}
	}
	applied, err := putLifecycle(ctx, client, bucket, rules)
	switch {
	case err != nil:
		return nil, err
	case !applied:
		what := fmt.Sprintf("expire after %d day(s)", res.ExpireDays)
		if res.GlacierDays > 0 {
			what = fmt.Sprintf("move to Glacier after %d day(s) nor %s", res.GlacierDays, what)
		}
		res.Warnings = append(res.Warnings, "the S3 server does not implement lifecycle configuration (501 NotImplemented): objects will not "+
			what+"; configure that on the storage side")
	default:
		res.Lifecycle = true
	}
	return res, nil
}

// ensureBucket creates bucket with Object Lock, or checks an existing bucket has it enabled.
func ensureBucket(ctx context.Context, client *s3.Client, bucket, region string) (created bool, err error) {
	_, err = client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	switch {
	case err == nil:
	case isNotFound(err) || httpStatus(err) == http.StatusNotFound:
		in := &s3.CreateBucketInput{Bucket: aws.String(bucket), ObjectLockEnabledForBucket: aws.Bool(true)}
		if region != "" && region != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
				LocationConstraint: types.BucketLocationConstraint(region)}
		}
		_, err := client.CreateBucket(ctx, in)
		var owned *types.BucketAlreadyOwnedByYou
		if err == nil {
			return true, nil
		}
		if !errors.As(err, &owned) {
			return false, fmt.Errorf("create bucket %s: %w", bucket, explain(err, bucket))
		}
	case httpStatus(err) == http.StatusForbidden:
		return false, fmt.Errorf("bucket %s: access denied (wrong credentials, or the bucket belongs to another account): %w", bucket, err)
	default:
		return false, fmt.Errorf("check bucket %s: %w", bucket, explain(err, bucket))
	}
	out, err := client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil && errorCode(err) != "ObjectLockConfigurationNotFoundError" {
		return false, fmt.Errorf("read Object Lock configuration of bucket %s: %w", bucket, explain(err, bucket))
	}
	if err != nil || out.ObjectLockConfiguration == nil ||
		out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return false, fmt.Errorf("bucket %s exists but Object Lock is not enabled on it: archive objects could be deleted; use a new bucket (pgtrail archive init creates it with Object Lock) or enable Object Lock on this one", bucket)
	}
	return false, nil
}

// putLifecycle merges rules into the bucket's lifecycle configuration. It reports false when the
// server does not implement lifecycle configuration.
func putLifecycle(ctx context.Context, client *s3.Client, bucket string, rules *types.BucketLifecycleConfiguration) (bool, error) {
	cur, err := client.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(bucket)})
	var existing []types.LifecycleRule
	switch {
	case err == nil:
		existing = cur.Rules
	case notImplemented(err):
		return false, nil
	case errorCode(err) == "NoSuchLifecycleConfiguration":
	default:
		return false, fmt.Errorf("read lifecycle configuration of bucket %s: %w", bucket, explain(err, bucket))
	}
	_, err = client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 aws.String(bucket),
		LifecycleConfiguration: MergeLifecycle(existing, rules),
	})
	if notImplemented(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("set lifecycle configuration of bucket %s: %w", bucket, explain(err, bucket))
	}
	return true, nil
}

func notImplemented(err error) bool {
	return err != nil && (errorCode(err) == "NotImplemented" || httpStatus(err) == http.StatusNotImplemented)
}

// LifecycleRules returns the lifecycle configuration of an archive under prefix ("" for the whole
// bucket): one rule, named after the prefix, that moves objects to Glacier after glacierAfter
// (none when 0 or not before expiry), expires them one day after the retention has passed (never
// when retention is 0), removes the noncurrent versions that expiry leaves a day later, and
// aborts multipart uploads left incomplete for a week. Expiry never comes before the retention:
// the object's lock would refuse the deletion anyway, but the day of margin keeps lifecycle from
// even trying. Durations are rounded up to whole days.
func LifecycleRules(prefix string, glacierAfter, retention time.Duration) *types.BucketLifecycleConfiguration {
	prefix = strings.Trim(prefix, "/")
	filter := ""
	if prefix != "" {
		filter = prefix + "/"
	}
	rule := types.LifecycleRule{
		ID:                             aws.String(RuleID(prefix)),
		Status:                         types.ExpirationStatusEnabled,
		Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String(filter)},
		AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(7)},
	}
	expire := int32(0)
	if retention > 0 {
		expire = days(retention) + 1
		rule.Expiration = &types.LifecycleExpiration{Days: aws.Int32(expire)}
		rule.NoncurrentVersionExpiration = &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(1)}
	}
	if g := days(glacierAfter); glacierAfter > 0 && (expire == 0 || g < expire) {
		rule.Transitions = []types.Transition{{Days: aws.Int32(g), StorageClass: types.TransitionStorageClassGlacier}}
	}
	return &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{rule}}
}

// RuleID names the lifecycle rule of the archive under prefix, so that a second init replaces it.
func RuleID(prefix string) string {
	id := "pgtrail-archive"
	if prefix != "" {
		id += ":" + prefix
	}
	if len(id) > 255 {
		id = id[:255]
	}
	return id
}

// MergeLifecycle returns the existing rules with those of ours that have the same IDs replaced,
// followed by ours, so that init keeps the bucket's other rules.
func MergeLifecycle(existing []types.LifecycleRule, ours *types.BucketLifecycleConfiguration) *types.BucketLifecycleConfiguration {
	mine := make(map[string]bool, len(ours.Rules))
	for _, r := range ours.Rules {
		mine[aws.ToString(r.ID)] = true
	}
	merged := &types.BucketLifecycleConfiguration{}
	for _, r := range existing {
		if !mine[aws.ToString(r.ID)] {
			merged.Rules = append(merged.Rules, r)
		}
	}
	merged.Rules = append(merged.Rules, ours.Rules...)
	return merged
}

// days rounds d up to whole days.
func days(d time.Duration) int32 {
	n := math.Ceil(float64(d) / float64(24*time.Hour))
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}
