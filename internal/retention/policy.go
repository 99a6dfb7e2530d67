// Package retention decides how long audit events are kept, in the database and in the archive,
// and removes old ones from the database without breaking the chain: per-tenant and per-event-type
// policies (audit.retention_policies), S3 lifecycle rules per tenant prefix derived from them, and
// pruning of old monthly partitions once they are archived and verified, leaving a signed anchor
// (audit.chain_anchors) that the chain in the database continues from.
package retention

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Interval is a PostgreSQL interval: months and days move by the calendar, Micros is fixed.
type Interval struct {
	Months, Days int32
	Micros       int64
}

// AddTo returns t moved forward by i in UTC. Where PostgreSQL clamps to a month's end (Jan 31 +
// 1 month is Feb 28), AddTo rolls over (Mar 2): never earlier, so a policy never ends early.
func (i Interval) AddTo(t time.Time) time.Time {
	return t.UTC().AddDate(0, int(i.Months), int(i.Days)).Add(time.Duration(i.Micros) * time.Microsecond)
}

// MaxDays returns i in whole days, rounded up, a month counted as 31 days: never shorter than i.
func (i Interval) MaxDays() int {
	d := float64(i.Months)*31 + float64(i.Days) + float64(i.Micros)/float64(24*time.Hour/time.Microsecond)
	return int(math.Ceil(d))
}

// String formats i like PostgreSQL's default output ("1 year 1 mon 3 days").
func (i Interval) String() string {
	var parts []string
	add := func(n int64, unit string) {
		if n == 0 {
			return
		}
		if n != 1 && n != -1 {
			unit += "s"
		}
		parts = append(parts, fmt.Sprintf("%d %s", n, unit))
	}
	add(int64(i.Months/12), "year")
	add(int64(i.Months%12), "mon")
	add(int64(i.Days), "day")
	if i.Micros != 0 {
		parts = append(parts, (time.Duration(i.Micros) * time.Microsecond).String())
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

func intervalOf(v pgtype.Interval) Interval {
	return Interval{Months: v.Months, Days: v.Days, Micros: v.Microseconds}
}

// Policy is a row of audit.retention_policies. A nil TenantID or ActionType matches any.
type Policy struct {
	TenantID   *string `json:"tenant_id"`
	ActionType *string `json:"action_type"`
	// Keep is how long events stay in the database (partitions are pruned after it).
	Keep Interval `json:"keep"`
	// ArchiveRetention is how long their archived copies stay (lifecycle expiration).
	ArchiveRetention Interval `json:"archive_retention"`
}

// Querier is what this package needs from a connection, pool or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LoadPolicies reads audit.retention_policies.
func LoadPolicies(ctx context.Context, q Querier) ([]Policy, error) {
	rows, err := q.Query(ctx, `SELECT tenant_id, action_type, keep, archive_retention FROM audit.retention_policies
	                            ORDER BY tenant_id NULLS FIRST, action_type NULLS FIRST`)
	if err != nil {
		return nil, fmt.Errorf("read retention policies: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Policy, error) {
		var p Policy
		var keep, arch pgtype.Interval
		err := r.Scan(&p.TenantID, &p.ActionType, &keep, &arch)
		p.Keep, p.ArchiveRetention = intervalOf(keep), intervalOf(arch)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read retention policies: %w", err)
	}
	return ps, nil
}

// Effective returns the policy that governs the events of tenant (nil: events without a
// tenant_id) with action type action, or nil when none does. The most specific row wins: tenant
// and action type, then tenant, then action type, then the row with neither. Events without a
// tenant_id follow the rows without one.
func Effective(policies []Policy, tenant *string, action string) *Policy {
	var best *Policy
	bestRank := -1
	for i := range policies {
		p := &policies[i]
		rank := 0
		if p.TenantID != nil {
			if tenant == nil || *p.TenantID != *tenant {
				continue
			}
			rank += 2
		}
		if p.ActionType != nil {
			if *p.ActionType != action {
				continue
			}
			rank++
		}
		if rank > bestRank {
			best, bestRank = p, rank
		}
	}
	return best
}

// actionTypes returns the action types policies name, plus "" for every other action type.
func actionTypes(policies []Policy) []string {
	seen := map[string]bool{"": true}
	out := []string{""}
	for _, p := range policies {
		if p.ActionType != nil && !seen[*p.ActionType] {
			seen[*p.ActionType] = true
			out = append(out, *p.ActionType)
		}
	}
	return out
}
