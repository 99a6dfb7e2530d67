package retention

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgtrail/pgtrail/internal/archive"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
)

// MaxLifecycleRules is S3's limit on the rules of one bucket's lifecycle configuration.
const MaxLifecycleRules = 1000

// LifecycleConfig is what PlanLifecycle needs to know about one archive.
type LifecycleConfig struct {
	// Prefix is the archive's prefix in the bucket ("" for the whole bucket).
	Prefix string
	// Tenants are the tenant_ids that have files in the archive (nil for events without one).
	// Tenants added later get no rule of their own until the plan is made again.
	Tenants []*string
	// Policies are the rows of audit.retention_policies.
	Policies []Policy
	// Retention is the archive's default retention (archive init --retention), for events no
	// policy covers; 0 keeps them forever.
	Retention time.Duration
	// GlacierAfter moves objects to Glacier at this age; 0 never.
	GlacierAfter time.Duration
	// LockRetention is the Object Lock retention objects are written with (stream --retention):
	// an expiration before it cannot delete anything. Only used for warnings.
	LockRetention time.Duration
}

// LifecyclePlan is the lifecycle configuration of one archive with per-tenant retention.
type LifecyclePlan struct {
	// Rules replace every rule of this archive (see ReplaceLifecycleRules): the base rule, whose
	// ID is archive/s3's RuleID(prefix), and rules whose IDs start with that ID and "/".
	Rules []types.LifecycleRule
	// Warnings say where the result differs from the policies as written.
	Warnings []string
}

// forever marks a retention without end.
const forever = math.MaxInt32

// PlanLifecycle turns retention policies into S3 lifecycle rules for an archive whose data files
// are under <prefix>/events/tenant=<t>/.
//
// S3 cannot select objects by action type, and where rules overlap the shortest expiration wins.
// So a tenant's files expire when the longest archive_retention among its action types has
// passed (events without any policy count with cfg.Retention), one day later for margin, as
// archive/s3's LifecycleRules does. When no known tenant keeps its files longer than the default
// does, the base rule on the whole prefix expires at the default and tenants with shorter
// retention get rules of their own. Otherwise the base rule has no expiration (a prefix-wide one
// would cut the longer tenants short), every known tenant gets its own rule, and digests/ get one
// expiring with the longest; tenants that appear later are then kept until the plan is made
// again. The base rule keeps the Glacier transition and the cleanup of incomplete uploads.
func PlanLifecycle(cfg LifecycleConfig) (*LifecyclePlan, error) {
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := archive.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("lifecycle plan: prefix: %w", err)
		}
	}
	base := archiveDays(cfg, nil, false)
	plan := &LifecyclePlan{}
	type tenantDays struct {
		part string
		days int
	}
	var tenants []tenantDays
	seen := map[string]bool{}
	for _, t := range cfg.Tenants {
		part := archive.TenantPartition(t)
		if seen[part] {
			continue
		}
		seen[part] = true
		tenants = append(tenants, tenantDays{part, archiveDays(cfg, t, true)})
	}
	slices.SortFunc(tenants, func(a, b tenantDays) int { return strings.Compare(a.part, b.part) })

	uniform := base != forever
	longest := base
	for _, t := range tenants {
		if t.days > base {
			uniform = false
		}
		longest = max(longest, t.days)
	}
	lock := days(cfg.LockRetention)
	root := ""
	if prefix != "" {
		root = prefix + "/"
	}
	baseRule := rule(s3sink.RuleID(prefix), root)
	baseRule.AbortIncompleteMultipartUpload = &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(7)}
	if uniform {
		expire(&baseRule, base)
	}
	if g := days(cfg.GlacierAfter); cfg.GlacierAfter > 0 && (!uniform || g < base+1) {
		baseRule.Transitions = []types.Transition{{Days: aws.Int32(int32(g)), StorageClass: types.TransitionStorageClassGlacier}}
	}
	plan.Rules = append(plan.Rules, baseRule)
	for _, t := range tenants {
		if t.days == forever || (uniform && t.days >= base) {
			continue
		}
		r := rule(ownedRuleID(prefix, "tenant="+t.part), root+archive.EventsPrefix+"tenant="+t.part+"/")
		expire(&r, t.days)
		plan.Rules = append(plan.Rules, r)
		if lock > 0 && t.days < lock {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf(
				"tenant=%s: archive retention of %d days is shorter than the Object Lock retention of %d days: its objects stay until their lock expires",
				t.part, t.days, lock))
		}
	}
	if !uniform {
		if longest != forever {
			r := rule(ownedRuleID(prefix, "digests"), root+archive.DigestsPrefix)
			expire(&r, longest)
			plan.Rules = append(plan.Rules, r)
		}
		if base != forever {
			plan.Warnings = append(plan.Warnings,
				"some tenants keep their archive longer than the default, so the prefix has no expiration of its own: tenants that appear later are kept until this plan is made again (rerun archive init)")
		}
	}
	if uniform && lock > 0 && base < lock {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf(
			"the default archive retention of %d days is shorter than the Object Lock retention of %d days: objects stay until their lock expires", base, lock))
	}
	if len(plan.Rules) > MaxLifecycleRules {
		return nil, fmt.Errorf("lifecycle plan: %d rules, more than S3's %d: too many tenants with retention of their own",
			len(plan.Rules), MaxLifecycleRules)
	}
	return plan, nil
}

// ErrForeignRule is returned by ReplaceLifecycleRules when another archive's rule would be
// dropped; it cannot happen with plans from PlanLifecycle.
var ErrForeignRule = errors.New("plan holds a rule of another archive")

// ReplaceLifecycleRules returns existing without the rules of the archive under prefix (its base
// rule and every rule whose ID starts with the base ID and "/"), followed by the plan's rules, so
// that tenant rules the policies no longer call for go away and other rules of the bucket stay.
func ReplaceLifecycleRules(existing []types.LifecycleRule, prefix string, plan *LifecyclePlan) ([]types.LifecycleRule, error) {
	baseID := s3sink.RuleID(strings.Trim(prefix, "/"))
	owned := func(id string) bool { return id == baseID || strings.HasPrefix(id, baseID+"/") }
	var out []types.LifecycleRule
	for _, r := range existing {
		if !owned(aws.ToString(r.ID)) {
			out = append(out, r)
		}
	}
	for _, r := range plan.Rules {
		if !owned(aws.ToString(r.ID)) {
			return nil, fmt.Errorf("replace lifecycle rules: %w: %s", ErrForeignRule, aws.ToString(r.ID))
		}
		out = append(out, r)
	}
	return out, nil
}

// archiveDays is the number of days a tenant's files must stay: the longest archive retention
// among its action types (forever when one has none). known false means "a tenant no rule
// names": events of tenants without a policy of their own.
func archiveDays(cfg LifecycleConfig, tenant *string, known bool) int {
	longest := 0
	for _, a := range actionTypes(cfg.Policies) {
		var p *Policy
		if known {
			p = Effective(cfg.Policies, tenant, a)
		} else {
			p = Effective(cfg.Policies, nil, a)
		}
		d := forever
		switch {
		case p != nil:
			d = p.ArchiveRetention.MaxDays()
		case cfg.Retention > 0:
			d = days(cfg.Retention)
		}
		longest = max(longest, d)
	}
	return longest
}

func rule(id, prefix string) types.LifecycleRule {
	return types.LifecycleRule{
		ID:     aws.String(id),
		Status: types.ExpirationStatusEnabled,
		Filter: &types.LifecycleRuleFilter{Prefix: aws.String(prefix)},
	}
}

// expire sets the expiration one day after d days, and the removal of the noncurrent versions
// that expiration leaves in a versioned (Object Lock) bucket.
func expire(r *types.LifecycleRule, d int) {
	r.Expiration = &types.LifecycleExpiration{Days: aws.Int32(int32(d) + 1)}
	r.NoncurrentVersionExpiration = &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(1)}
}

// ownedRuleID names a rule of the archive under prefix: the base rule's ID, "/" and name. S3
// allows 255 characters, so long names are shortened to a prefix and a hash.
func ownedRuleID(prefix, name string) string {
	id := s3sink.RuleID(prefix) + "/" + name
	if len(id) <= 255 {
		return id
	}
	sum := sha256.Sum256([]byte(name))
	tail := "~" + hex.EncodeToString(sum[:8])
	return id[:255-len(tail)] + tail
}

// days rounds d up to whole days.
func days(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := math.Ceil(float64(d) / float64(24*time.Hour))
	if n > forever-1 {
		return forever - 1
	}
	return int(n)
}
