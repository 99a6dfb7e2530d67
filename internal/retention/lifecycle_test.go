package retention_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/retention"
)

var str = eventtest.Str

func years(n int32) retention.Interval { return retention.Interval{Months: 12 * n} }
func days(n int32) retention.Interval  { return retention.Interval{Days: n} }

func TestEffective(t *testing.T) {
	policies := []retention.Policy{
		{Keep: years(1), ArchiveRetention: years(7)},
		{ActionType: str("LOGIN"), Keep: days(90), ArchiveRetention: years(1)},
		{TenantID: str("acme"), Keep: years(2), ArchiveRetention: years(10)},
		{TenantID: str("acme"), ActionType: str("LOGIN"), Keep: days(30), ArchiveRetention: days(400)},
	}
	cases := []struct {
		tenant *string
		action string
		want   int // index into policies, -1 for none
	}{
		{str("acme"), "LOGIN", 3},
		{str("acme"), "UPDATE", 2},
		{str("globex"), "LOGIN", 1},
		{str("globex"), "UPDATE", 0},
		{nil, "LOGIN", 1},
		{nil, "DDL", 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", deref(c.tenant), c.action), func(t *testing.T) {
			got := retention.Effective(policies, c.tenant, c.action)
			if got != &policies[c.want] {
				t.Errorf("Effective = %+v, want policy %d", got, c.want)
			}
		})
	}
	if got := retention.Effective(policies[1:2], str("acme"), "UPDATE"); got != nil {
		t.Errorf("no policy covers acme UPDATE, got %+v", got)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// rules summarizes a plan as "filter prefix=expiration days[+glacier days]" in order.
func rules(p *retention.LifecyclePlan) string {
	var parts []string
	for _, r := range p.Rules {
		s := aws.ToString(r.Filter.Prefix) + "="
		if r.Expiration != nil {
			s += fmt.Sprint(aws.ToInt32(r.Expiration.Days))
		} else {
			s += "never"
		}
		if len(r.Transitions) > 0 {
			s += fmt.Sprintf("+glacier%d", aws.ToInt32(r.Transitions[0].Days))
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestPlanLifecycle(t *testing.T) {
	const day = 24 * time.Hour
	tenants := []*string{str("acme"), str("globex"), nil}
	cases := []struct {
		name     string
		cfg      retention.LifecycleConfig
		want     string
		warnings []string
	}{
		{"NoPolicies", retention.LifecycleConfig{Prefix: "app", Tenants: tenants, Retention: 2555 * day, GlacierAfter: 90 * day},
			"app/=2556+glacier90", nil},
		{"ShorterTenant", retention.LifecycleConfig{Prefix: "app", Tenants: tenants, Retention: 2555 * day, GlacierAfter: 90 * day,
			Policies: []retention.Policy{{TenantID: str("globex"), Keep: days(30), ArchiveRetention: days(400)}}},
			"app/=2556+glacier90 app/events/tenant=globex/=401", nil},
		// globex keeps LOGIN 400 days but everything else by default (2555): its files hold both.
		{"ActionTypeCannotShorten", retention.LifecycleConfig{Tenants: tenants, Retention: 2555 * day,
			Policies: []retention.Policy{{TenantID: str("globex"), ActionType: str("LOGIN"), Keep: days(30), ArchiveRetention: days(400)}}},
			"=2556", nil},
		{"LongerTenant", retention.LifecycleConfig{Prefix: "app", Tenants: tenants, Retention: 2555 * day, GlacierAfter: 90 * day,
			Policies: []retention.Policy{{TenantID: str("acme"), Keep: years(2), ArchiveRetention: years(10)}}},
			"app/=never+glacier90 app/events/tenant=_none/=2556 app/events/tenant=acme/=3721 app/events/tenant=globex/=2556 app/digests/=3721",
			[]string{"tenants that appear later are kept"}},
		{"DefaultPolicyRow", retention.LifecycleConfig{Tenants: tenants[:1], Retention: 0,
			Policies: []retention.Policy{{Keep: years(1), ArchiveRetention: years(3)}}},
			"=1117", nil},
		{"ForeverByDefault", retention.LifecycleConfig{Tenants: tenants, Retention: 0,
			Policies: []retention.Policy{{TenantID: str("globex"), Keep: days(30), ArchiveRetention: days(400)}}},
			"=never events/tenant=globex/=401", nil},
		{"ShorterThanLock", retention.LifecycleConfig{Tenants: tenants, Retention: 2555 * day, LockRetention: 2555 * day,
			Policies: []retention.Policy{{TenantID: str("globex"), Keep: days(30), ArchiveRetention: days(400)}}},
			"=2556 events/tenant=globex/=401", []string{"tenant=globex: archive retention of 400 days is shorter than the Object Lock retention of 2555 days"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := retention.PlanLifecycle(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := rules(plan); got != c.want {
				t.Errorf("rules:\n%s\nwant\n%s", got, c.want)
			}
			if len(plan.Warnings) != len(c.warnings) {
				t.Errorf("warnings %q, want %d", plan.Warnings, len(c.warnings))
			}
			for i, w := range c.warnings {
				if i < len(plan.Warnings) && !strings.Contains(plan.Warnings[i], w) {
					t.Errorf("warning %q, want one saying %q", plan.Warnings[i], w)
				}
			}
			for _, r := range plan.Rules {
				if id := aws.ToString(r.ID); len(id) > 255 || !strings.HasPrefix(id, "pgtrail-archive") {
					t.Errorf("rule ID %q", id)
				}
			}
		})
	}
}

// TestReplaceLifecycleRules keeps the bucket's other rules and another archive's, and drops
// tenant rules a new plan no longer has.
func TestReplaceLifecycleRules(t *testing.T) {
	r := func(id string) types.LifecycleRule { return types.LifecycleRule{ID: aws.String(id)} }
	existing := []types.LifecycleRule{r("logs-expiry"), r("pgtrail-archive:app"), r("pgtrail-archive:app/tenant=old"),
		r("pgtrail-archive:app2"), r("pgtrail-archive:app2/tenant=x")}
	plan := &retention.LifecyclePlan{Rules: []types.LifecycleRule{r("pgtrail-archive:app"), r("pgtrail-archive:app/tenant=new")}}
	got, err := retention.ReplaceLifecycleRules(existing, "app", plan)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range got {
		ids = append(ids, aws.ToString(x.ID))
	}
	want := "logs-expiry pgtrail-archive:app2 pgtrail-archive:app2/tenant=x pgtrail-archive:app pgtrail-archive:app/tenant=new"
	if strings.Join(ids, " ") != want {
		t.Errorf("rules = %v, want %s", ids, want)
	}
	bad := &retention.LifecyclePlan{Rules: []types.LifecycleRule{r("logs-expiry")}}
	if _, err := retention.ReplaceLifecycleRules(existing, "app", bad); !errors.Is(err, retention.ErrForeignRule) {
		t.Errorf("a plan with another archive's rule: err = %v", err)
	}
}

func TestInterval(t *testing.T) {
	i := retention.Interval{Months: 13, Days: 2, Micros: 3600e6}
	if got := i.String(); got != "1 year 1 mon 2 days 1h0m0s" {
		t.Errorf("String = %q", got)
	}
	if got := i.MaxDays(); got != 13*31+2+1 {
		t.Errorf("MaxDays = %d", got)
	}
	if got := i.AddTo(time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2025, 3, 5, 1, 0, 0, 0, time.UTC)) {
		t.Errorf("AddTo = %s", got)
	}
}
