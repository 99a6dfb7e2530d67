package search

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
)

// ErrNoAccess is returned when the connection's role can read neither audit.events nor
// audit.events_masked.
var ErrNoAccess = errors.New("no read access to the audit trail: grant pgtrail_auditor (everything), pgtrail_reader (masked) or pgtrail_tenant_reader (masked, own tenants)")

// Querier is what the database search needs from a connection, pool or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Relation is where the database search reads.
type Relation struct {
	// Name is audit.events, audit.events_masked or audit.tenant_events.
	Name string
	// Masked: Name is the masked view (or reads it), which has no hash columns.
	Masked bool
	// Function: Name is a function of the period (since, until), read as Name(since, until).
	Function bool
}

// The relations a search reads, by privilege.
var (
	Events       = Relation{Name: "audit.events"}
	EventsMasked = Relation{Name: "audit.events_masked", Masked: true}
	// TenantEvents is what tenant readers read (schema version 9): the masked trail of their
	// tenants, selected inside a SECURITY DEFINER function before any condition of theirs applies,
	// so that no plan shows them anything of another tenant's rows.
	TenantEvents = Relation{Name: "audit.tenant_events", Masked: true, Function: true}
)

// ChooseRelation returns audit.events when the current role may read it (auditors, superusers),
// else audit.events_masked when it may read that (readers), else audit.tenant_events when it may
// call that (tenant readers), else ErrNoAccess.
func ChooseRelation(ctx context.Context, q Querier) (Relation, error) {
	var full, masked, tenant bool
	err := q.QueryRow(ctx, `SELECT has_table_privilege('audit.events', 'SELECT'),
	                               to_regclass('audit.events_masked') IS NOT NULL AND has_table_privilege('audit.events_masked', 'SELECT'),
	                               to_regprocedure('audit.tenant_events(timestamptz, timestamptz)') IS NOT NULL
	                               AND has_function_privilege('audit.tenant_events(timestamptz, timestamptz)', 'EXECUTE')`).
		Scan(&full, &masked, &tenant)
	if err != nil {
		return Relation{}, fmt.Errorf("check read access: %w", err)
	}
	switch {
	case full:
		return Events, nil
	case masked:
		return EventsMasked, nil
	case tenant:
		return TenantEvents, nil
	}
	return Relation{}, ErrNoAccess
}

// columns are read in the form the canonical encoding uses (inet through its output function,
// jsonb as text), like chain.Read.
var columns = pgtrail.SelectList(false)

// Query returns the SQL and arguments that select f's events from rel, in result order, at most
// limit rows (0: all). Values are parameters; the text is made only of fixed fragments. Each
// filter is a comparison the indexes serve: (md5(actor_id), occurred_at), (md5(resource_type),
// md5(resource_id), occurred_at), (action_type, occurred_at) and (md5(tenant_id), occurred_at).
// The free-text columns are indexed by md5 so that no value a writer chooses is too long for an
// index entry; the value itself is compared too. It works through the masked view as well: md5
// and the comparisons are leakproof, so they reach the table under security_barrier.
func Query(f *Filter, rel Relation, limit int) (string, []any) {
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(columns)
	if rel.Masked {
		b.WriteString(", NULL::bytea, NULL::bytea")
	} else {
		b.WriteString(", prev_hash, entry_hash")
	}
	b.WriteString("\n  FROM ")
	b.WriteString(rel.Name)
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if rel.Function {
		// The period goes into the function, which selects it first; the bounds below repeat
		// it (until is exclusive there, inclusive here).
		since, until := any("-infinity"), any("infinity")
		if !f.Since.IsZero() {
			since = f.Since
		}
		if !f.Until.IsZero() {
			until = f.Until
		}
		b.WriteString("(" + arg(since) + "::timestamptz, " + arg(until) + "::timestamptz)")
	}
	if f.Actor != "" {
		conds = append(conds, hashed("actor_id", arg(f.Actor)))
	}
	if f.ResourceType != "" {
		conds = append(conds, hashed("resource_type", arg(f.ResourceType)))
	}
	if f.ResourceID != nil {
		conds = append(conds, hashed("resource_id", arg(*f.ResourceID)))
	}
	switch len(f.Actions) {
	case 0:
	case 1:
		conds = append(conds, "action_type = "+arg(f.Actions[0]))
	default:
		conds = append(conds, "action_type = ANY ("+arg(f.Actions)+"::text[])")
	}
	if f.Outcome != "" {
		conds = append(conds, "outcome = "+arg(f.Outcome))
	}
	if f.Tenant != nil {
		if *f.Tenant == NoTenant {
			conds = append(conds, "md5(tenant_id) IS NULL AND tenant_id IS NULL")
		} else {
			conds = append(conds, hashed("tenant_id", arg(*f.Tenant)))
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, "occurred_at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "occurred_at < "+arg(f.Until))
	}
	if len(conds) > 0 {
		b.WriteString("\n WHERE ")
		b.WriteString(strings.Join(conds, "\n   AND "))
	}
	if f.NewestFirst {
		b.WriteString("\n ORDER BY occurred_at DESC, seq DESC")
	} else {
		b.WriteString("\n ORDER BY occurred_at, seq")
	}
	if limit > 0 {
		b.WriteString("\n LIMIT " + arg(limit))
	}
	return b.String(), args
}

// hashed compares an md5-indexed column with a parameter: the index finds md5(column), the
// value itself settles it (md5 collisions).
func hashed(column, param string) string {
	return "md5(" + column + ") = md5(" + param + ") AND " + column + " = " + param
}

// EachDB calls fn for every event of the database that f selects, in result order, up to
// f.Limit, reading from the relation ChooseRelation picks. The event is reused between calls.
func EachDB(ctx context.Context, q Querier, f Filter, fn func(*pgtrail.Event) error) (Relation, error) {
	if err := f.Normalize(); err != nil {
		return Relation{}, err
	}
	rel, err := ChooseRelation(ctx, q)
	if err != nil {
		return Relation{}, err
	}
	return rel, eachRow(ctx, q, &f, rel, f.Limit, fn)
}

func eachRow(ctx context.Context, q Querier, f *Filter, rel Relation, limit int, fn func(*pgtrail.Event) error) error {
	sql, args := Query(f, rel, limit)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("search %s: %w", rel.Name, err)
	}
	defer rows.Close()
	scan := pgtrail.NewRowScanner()
	for rows.Next() {
		if err := rows.Scan(scan.Targets()...); err != nil {
			return fmt.Errorf("search %s: %w", rel.Name, err)
		}
		e, err := scan.Event()
		if err != nil {
			return fmt.Errorf("search %s: %w", rel.Name, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("search %s: %w", rel.Name, err)
	}
	return nil
}

// DB searches the database: at most f.Limit events (all when 0), Truncated when there were more.
func DB(ctx context.Context, q Querier, f Filter) (*Result, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	rel, err := ChooseRelation(ctx, q)
	if err != nil {
		return nil, err
	}
	res := &Result{Source: "database", Masked: rel.Masked}
	limit := f.Limit
	if limit > 0 {
		limit++ // one more tells that there are more
	}
	err = eachRow(ctx, q, &f, rel, limit, func(e *pgtrail.Event) error {
		if f.Limit > 0 && len(res.Events) == f.Limit {
			res.Truncated = true
			return nil
		}
		res.Events = append(res.Events, *e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
