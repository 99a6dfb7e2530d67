package s3_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

const day = 24 * time.Hour

func TestInitBucket(t *testing.T) {
	ctx := context.Background()
	srv := testenv.S3(t)
	client := newClient(t, srv, srv.AccessKey, srv.SecretKey)
	existing := testenv.S3Bucket(t, srv)
	noLock := strings.Replace(existing, "t-", "nolock-", 1)
	if _, err := client.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(noLock)}); err != nil {
		t.Fatal(err)
	}
	fresh := strings.Replace(existing, "t-", "new-", 1)
	cfg := s3sink.InitConfig{Region: srv.Region, Retention: 7 * 366 * day, GlacierAfter: 90 * day}

	tests := []struct {
		name, bucket string
		cfg          s3sink.InitConfig
		wantCreated  bool
		wantErr      string
	}{
		{"CreatesBucket", fresh, cfg, true, ""},
		{"AgainIsIdempotent", fresh, cfg, false, ""},
		{"ExistingLockedBucket", existing, s3sink.InitConfig{Retention: 30 * day, LockMode: "GOVERNANCE"}, false, ""},
		{"ExistingBucketWithoutLock", noLock, cfg, false, "Object Lock is not enabled"},
		{"ZeroRetention", fresh, s3sink.InitConfig{}, false, "retention must be positive"},
		{"BadLockMode", fresh, s3sink.InitConfig{Retention: day, LockMode: "NONE"}, false, "lock mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s3sink.InitBucket(ctx, client, tt.bucket, "/audit/prod/", tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("InitBucket = %+v, %v; want an error containing %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Created != tt.wantCreated || res.Prefix != "audit/prod" {
				t.Errorf("InitBucket = %+v, want created %v and prefix audit/prod", res, tt.wantCreated)
			}
			// versitygw does not implement lifecycle: reported, not fatal.
			if res.Lifecycle || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "501 NotImplemented") {
				t.Errorf("lifecycle applied %v, warnings %q; want one warning about 501", res.Lifecycle, res.Warnings)
			}
			lock, err := client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: aws.String(tt.bucket)})
			if err != nil {
				t.Fatal(err)
			}
			c := lock.ObjectLockConfiguration
			wantMode := strings.ToUpper(tt.cfg.LockMode)
			if wantMode == "" {
				wantMode = s3sink.LockCompliance
			}
			if c.ObjectLockEnabled != types.ObjectLockEnabledEnabled || c.Rule == nil ||
				string(c.Rule.DefaultRetention.Mode) != wantMode || aws.ToInt32(c.Rule.DefaultRetention.Days) != res.RetentionDays {
				t.Errorf("Object Lock configuration = %+v / %+v, want enabled, %s for %d days", c, c.Rule, wantMode, res.RetentionDays)
			}
		})
	}
}

func TestLifecycleRules(t *testing.T) {
	tests := []struct {
		name                    string
		prefix                  string
		glacierAfter, retention time.Duration
		wantFilter              string
		wantGlacier, wantExpire int32 // 0: none
	}{
		{"SevenYears", "audit/prod", 90 * day, 7 * 366 * day, "audit/prod/", 90, 2563},
		{"SlashesTrimmed", "/audit/", 30 * day, 365 * day, "audit/", 30, 366},
		{"WholeBucket", "", 90 * day, 400 * day, "", 90, 401},
		{"PartialDaysRoundUp", "p", 36 * time.Hour, 36 * time.Hour, "p/", 2, 3},
		{"NoGlacier", "p", 0, 10 * day, "p/", 0, 11},
		{"GlacierNotBeforeExpiry", "p", 20 * day, 10 * day, "p/", 0, 11},
		{"KeepForever", "p", 90 * day, 0, "p/", 90, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s3sink.LifecycleRules(tt.prefix, tt.glacierAfter, tt.retention)
			if len(cfg.Rules) != 1 {
				t.Fatalf("%d rules, want 1", len(cfg.Rules))
			}
			r := cfg.Rules[0]
			if r.Status != types.ExpirationStatusEnabled || aws.ToString(r.Filter.Prefix) != tt.wantFilter ||
				!strings.HasPrefix(aws.ToString(r.ID), "pgtrail-archive") {
				t.Errorf("rule %s status %s filter %q, want enabled with filter %q", aws.ToString(r.ID), r.Status, aws.ToString(r.Filter.Prefix), tt.wantFilter)
			}
			var glacier int32
			for _, tr := range r.Transitions {
				if tr.StorageClass != types.TransitionStorageClassGlacier {
					t.Errorf("transition to %s, want GLACIER", tr.StorageClass)
				}
				glacier = aws.ToInt32(tr.Days)
			}
			if glacier != tt.wantGlacier || len(r.Transitions) > 1 {
				t.Errorf("transitions %+v, want GLACIER after %d days (0: none)", r.Transitions, tt.wantGlacier)
			}
			var expire int32
			if r.Expiration != nil {
				expire = aws.ToInt32(r.Expiration.Days)
			}
			if expire != tt.wantExpire {
				t.Errorf("expiration after %d days, want %d", expire, tt.wantExpire)
			}
			// Expiry must never come before the retention has passed.
			if tt.retention > 0 && time.Duration(expire)*day < tt.retention {
				t.Errorf("expiration after %d days is before the retention %s", expire, tt.retention)
			}
			if (r.NoncurrentVersionExpiration != nil) != (tt.retention > 0) {
				t.Errorf("noncurrent version expiration %+v with retention %s", r.NoncurrentVersionExpiration, tt.retention)
			}
			if aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation) != 7 {
				t.Errorf("abort incomplete uploads after %+v, want 7 days", r.AbortIncompleteMultipartUpload)
			}
		})
	}
}

func TestMergeLifecycle(t *testing.T) {
	other := types.LifecycleRule{ID: aws.String("logs-expiry"), Status: types.ExpirationStatusEnabled}
	oldOurs := types.LifecycleRule{ID: aws.String(s3sink.RuleID("audit")), Status: types.ExpirationStatusDisabled}
	ours := s3sink.LifecycleRules("audit", 90*day, 400*day)
	got := s3sink.MergeLifecycle([]types.LifecycleRule{other, oldOurs}, ours)
	if len(got.Rules) != 2 || aws.ToString(got.Rules[0].ID) != "logs-expiry" ||
		aws.ToString(got.Rules[1].ID) != "pgtrail-archive:audit" || got.Rules[1].Status != types.ExpirationStatusEnabled {
		t.Errorf("merged rules = %+v, want the bucket's other rule kept and ours replaced", got.Rules)
	}
}
