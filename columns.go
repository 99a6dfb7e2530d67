package pgtrail

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgtype"
)

// Column is one column of audit.events as pgtrail's readers see it. Columns lists them in the
// table's order; a column added by a migration is added here (TestColumns_MatchTheTable
// compares the two), and the readers built on the table follow: the SQL readers (SelectList,
// RowScanner), the readers of text forms (SetText: pgoutput, COPY's text format).
type Column struct {
	Name string
	// Select reads the column in the form the canonical encoding hashes: uuid, jsonb and xid8
	// as text, inet through its output function (format('%s', …): host addresses without /32).
	Select string
	// Link: prev_hash and entry_hash, the chain's links, which the canonical entry leaves out
	// (and the masked view does not show).
	Link bool
	// setText sets e's field from the column's text output form; null says the value is NULL.
	setText func(e *Event, text []byte, null bool) error
	// target is where RowScanner scans Select's value.
	target func(s *RowScanner) any
}

// str, nullable and the other constructors below build the Column of one field's kind.
func str(name string, field func(*Event) *string) Column {
	return Column{Name: name, Select: name,
		setText: func(e *Event, t []byte, _ bool) error { *field(e) = string(t); return nil },
		target:  func(s *RowScanner) any { return field(&s.e) }}
}

func nullable(name string, field func(*Event) **string) Column {
	return Column{Name: name, Select: name,
		setText: func(e *Event, t []byte, null bool) error {
			if null {
				*field(e) = nil
			} else {
				v := string(t)
				*field(e) = &v
			}
			return nil
		},
		target: func(s *RowScanner) any { return field(&s.e) }}
}

// withSelect is c read through another expression.
func (c Column) withSelect(expr string) Column {
	c.Select = expr
	return c
}

func link(name string, field func(*Event) *[]byte) Column {
	return Column{Name: name, Select: name, Link: true,
		setText: func(e *Event, t []byte, _ bool) error {
			// bytea's hex text form (\x…), the server default since PostgreSQL 9.0.
			s := string(t)
			if !strings.HasPrefix(s, `\x`) {
				return fmt.Errorf("bytea not in hex format: %.10q", s)
			}
			b, err := hex.DecodeString(s[2:])
			*field(e) = b
			return err
		},
		target: func(s *RowScanner) any { return field(&s.e) }}
}

// inetText reads an inet column as the canonical encoding hashes it.
func inetText(name string) string {
	return "CASE WHEN " + name + " IS NOT NULL THEN format('%s', " + name + ") END"
}

// Columns are audit.events' columns in the table's order.
var Columns = []Column{
	{Name: "seq", Select: "seq",
		setText: func(e *Event, t []byte, _ bool) (err error) {
			e.Seq, err = strconv.ParseInt(string(t), 10, 64)
			return err
		},
		target: func(s *RowScanner) any { return &s.e.Seq }},
	str("event_id", func(e *Event) *string { return &e.EventID }).withSelect("event_id::text"),
	{Name: "occurred_at", Select: "occurred_at",
		setText: func(e *Event, t []byte, _ bool) error {
			err := scanText(pgtype.TimestamptzOID, t, &e.OccurredAt)
			e.OccurredAt = e.OccurredAt.UTC()
			return err
		},
		target: func(s *RowScanner) any { return &s.e.OccurredAt }},
	{Name: "txid", Select: "txid::text",
		setText: func(e *Event, t []byte, _ bool) (err error) {
			e.TxID, err = strconv.ParseUint(string(t), 10, 64)
			return err
		},
		target: func(s *RowScanner) any { return &s.txid }},
	str("action_type", func(e *Event) *string { return &e.ActionType }),
	str("resource_type", func(e *Event) *string { return &e.ResourceType }),
	nullable("resource_id", func(e *Event) **string { return &e.ResourceID }),
	str("outcome", func(e *Event) *string { return &e.Outcome }),
	str("actor_id", func(e *Event) *string { return &e.ActorID }),
	nullable("actor_ip", func(e *Event) **string { return &e.ActorIP }).withSelect(inetText("actor_ip")),
	nullable("actor_ip_raw", func(e *Event) **string { return &e.ActorIPRaw }),
	nullable("actor_user_agent", func(e *Event) **string { return &e.ActorUserAgent }),
	nullable("request_id", func(e *Event) **string { return &e.RequestID }),
	nullable("tenant_id", func(e *Event) **string { return &e.TenantID }),
	str("db_user", func(e *Event) *string { return &e.DBUser }),
	nullable("application_name", func(e *Event) **string { return &e.ApplicationName }),
	nullable("client_addr", func(e *Event) **string { return &e.ClientAddr }).withSelect(inetText("client_addr")),
	{Name: "changed_columns", Select: "changed_columns",
		setText: func(e *Event, t []byte, _ bool) error {
			e.ChangedColumns = []string{}
			return scanText(pgtype.TextArrayOID, t, &e.ChangedColumns)
		},
		target: func(s *RowScanner) any { return &s.e.ChangedColumns }},
	nullable("before_state", func(e *Event) **string { return &e.BeforeState }).withSelect("before_state::text"),
	nullable("after_state", func(e *Event) **string { return &e.AfterState }).withSelect("after_state::text"),
	nullable("details", func(e *Event) **string { return &e.Details }).withSelect("details::text"),
	link("prev_hash", func(e *Event) *[]byte { return &e.PrevHash }),
	link("entry_hash", func(e *Event) *[]byte { return &e.EntryHash }),
}

// textTypes parse the text forms of timestamptz and text[]: a pgtype.Map caches its plans
// without a lock, so each goroutine takes one of its own.
var textTypes = sync.Pool{New: func() any { return pgtype.NewMap() }}

// scanText parses src, the text form of a value of type oid, into dst.
func scanText(oid uint32, src []byte, dst any) error {
	m := textTypes.Get().(*pgtype.Map)
	defer textTypes.Put(m)
	return m.Scan(oid, pgtype.TextFormatCode, src, dst)
}

var columnIndex = func() map[string]*Column {
	m := make(map[string]*Column, len(Columns))
	for i := range Columns {
		m[Columns[i].Name] = &Columns[i]
	}
	return m
}()

// SelectList is the select list of audit.events' columns in Columns' order, each read as
// Column.Select does; links adds prev_hash and entry_hash at the end.
func SelectList(links bool) string {
	parts := make([]string, 0, len(Columns))
	for _, c := range Columns {
		if !c.Link || links {
			parts = append(parts, c.Select)
		}
	}
	return strings.Join(parts, ", ")
}

// SetText sets the field of column name from its text output form (as pgoutput and COPY's text
// format give it). known is false for a column pgtrail does not read (one a later migration
// added), which is left alone.
func (e *Event) SetText(name string, text []byte, null bool) (known bool, err error) {
	c := columnIndex[name]
	if c == nil {
		return false, nil
	}
	if err := c.setText(e, text, null); err != nil {
		return true, fmt.Errorf("column %s: %w", name, err)
	}
	return true, nil
}

// RowScanner scans rows of SelectList(true) (or, with links false, of SelectList(false)
// followed by the two link columns read some other way) into an Event. It is reused from row to
// row: the Event it returns is overwritten by the next Scan.
type RowScanner struct {
	e       Event
	txid    string
	targets []any
}

// NewRowScanner returns a scanner for SelectList(true)'s columns.
func NewRowScanner() *RowScanner {
	s := &RowScanner{}
	for _, c := range Columns {
		s.targets = append(s.targets, c.target(s))
	}
	return s
}

// Targets are the destinations of one row's Scan.
func (s *RowScanner) Targets() []any { return s.targets }

// Event is the row scanned last, its time in UTC.
func (s *RowScanner) Event() (*Event, error) {
	var err error
	if s.e.TxID, err = strconv.ParseUint(s.txid, 10, 64); err != nil {
		return nil, fmt.Errorf("seq %d: bad txid %q: %w", s.e.Seq, s.txid, err)
	}
	s.e.OccurredAt = s.e.OccurredAt.UTC()
	return &s.e, nil
}
