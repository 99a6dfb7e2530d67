package search

import (
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgtrail/pgtrail"
)

// Record is an event as the JSON output shows it: the columns of audit.events (and the archive),
// JSON columns as JSON, hashes as hex (absent when the trail was read masked).
type Record struct {
	Seq             int64           `json:"seq"`
	EventID         string          `json:"event_id"`
	OccurredAt      time.Time       `json:"occurred_at"`
	TxID            uint64          `json:"txid"`
	ActionType      string          `json:"action_type"`
	ResourceType    string          `json:"resource_type"`
	ResourceID      *string         `json:"resource_id"`
	Outcome         string          `json:"outcome"`
	ActorID         string          `json:"actor_id"`
	ActorIP         *string         `json:"actor_ip"`
	ActorIPRaw      *string         `json:"actor_ip_raw"`
	ActorUserAgent  *string         `json:"actor_user_agent"`
	RequestID       *string         `json:"request_id"`
	TenantID        *string         `json:"tenant_id"`
	DBUser          string          `json:"db_user"`
	ApplicationName *string         `json:"application_name"`
	ClientAddr      *string         `json:"client_addr"`
	ChangedColumns  []string        `json:"changed_columns"`
	BeforeState     json.RawMessage `json:"before_state"`
	AfterState      json.RawMessage `json:"after_state"`
	Details         json.RawMessage `json:"details"`
	PrevHash        string          `json:"prev_hash,omitempty"`
	EntryHash       string          `json:"entry_hash,omitempty"`
}

// NewRecord converts e.
func NewRecord(e *pgtrail.Event) Record {
	raw := func(s *string) json.RawMessage {
		if s == nil {
			return json.RawMessage("null")
		}
		return json.RawMessage(*s)
	}
	cols := e.ChangedColumns
	if cols == nil {
		cols = []string{}
	}
	r := Record{
		Seq: e.Seq, EventID: e.EventID, OccurredAt: e.OccurredAt.UTC(), TxID: e.TxID,
		ActionType: e.ActionType, ResourceType: e.ResourceType, ResourceID: e.ResourceID, Outcome: e.Outcome,
		ActorID: e.ActorID, ActorIP: e.ActorIP, ActorIPRaw: e.ActorIPRaw, ActorUserAgent: e.ActorUserAgent,
		RequestID: e.RequestID, TenantID: e.TenantID, DBUser: e.DBUser, ApplicationName: e.ApplicationName,
		ClientAddr: e.ClientAddr, ChangedColumns: cols, BeforeState: raw(e.BeforeState),
		AfterState: raw(e.AfterState), Details: raw(e.Details),
	}
	if len(e.EntryHash) > 0 {
		r.PrevHash, r.EntryHash = hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.EntryHash)
	}
	return r
}

// WriteJSON writes res as one JSON object: source, masked, truncated, count and the events.
func WriteJSON(w io.Writer, res *Result) error {
	recs := make([]Record, len(res.Events))
	for i := range res.Events {
		recs[i] = NewRecord(&res.Events[i])
	}
	out := struct {
		*Result
		Count  int      `json:"count"`
		Events []Record `json:"events"`
	}{res, len(recs), recs}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteTable writes res as an aligned table for a terminal, one event per line.
func WriteTable(w io.Writer, res *Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OCCURRED_AT (UTC)\tSEQ\tTENANT\tACTOR\tACTION\tRESOURCE\tOUTCOME\tACTOR_IP")
	for i := range res.Events {
		e := &res.Events[i]
		resource := e.ResourceType
		if e.ResourceID != nil {
			resource += ":" + *e.ResourceID
		}
		ip := deref(e.ActorIP)
		if ip == "" {
			ip = deref(e.ActorIPRaw)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.OccurredAt.UTC().Format("2006-01-02 15:04:05.000"),
			e.Seq, cell(deref(e.TenantID)), cell(e.ActorID), e.ActionType, cell(resource), e.Outcome, cell(ip))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	note := fmt.Sprintf("%d event(s) from %s", len(res.Events), res.Source)
	if res.Masked {
		note += ", masked (PII and addresses hidden: you read audit.events_masked)"
	}
	if res.Truncated {
		note += "; more matched: narrow the filter or raise --limit"
	}
	if n := len(res.Unverified); n > 0 {
		note += fmt.Sprintf("; %d archived file(s) left out: no digest covers them (an upload in progress, or added by someone: pgtrail verify archive says which); --include-unverified reads them", n)
	}
	_, err := fmt.Fprintln(w, note)
	return err
}

// cell keeps a value on one line of the table: audit data is written by applications, and a
// newline or tab in it would forge rows.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	q := strconv.Quote(s)
	if q[1:len(q)-1] == s && !strings.ContainsAny(s, " \t") {
		return s
	}
	return q
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// CSVColumns are the columns CSVWriter writes, named as in audit.events and the archive.
var CSVColumns = []string{"seq", "event_id", "occurred_at", "txid", "action_type", "resource_type",
	"resource_id", "outcome", "actor_id", "actor_ip", "actor_ip_raw", "actor_user_agent", "request_id",
	"tenant_id", "db_user", "application_name", "client_addr", "changed_columns", "before_state",
	"after_state", "details", "prev_hash", "entry_hash"}

// CSVWriter writes events as CSV with a header row. NULL is an empty cell; changed_columns is a
// JSON array; JSON columns are their JSON text; occurred_at is RFC 3339 UTC with microseconds.
type CSVWriter struct {
	w *csv.Writer
	// EscapeFormulas prefixes cells that start with = + - @ or a tab or carriage return with a
	// single quote, so that a spreadsheet opening the file shows them instead of evaluating them
	// (audit data holds whatever applications and their users sent). The cell then differs from
	// the stored value; Parquet keeps values exact.
	EscapeFormulas bool
	header         bool
}

// NewCSVWriter returns a writer to w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{w: csv.NewWriter(w)} }

// Write writes one event (and the header before the first).
func (c *CSVWriter) Write(e *pgtrail.Event) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVColumns); err != nil {
			return err
		}
	}
	cols, _ := json.Marshal(e.ChangedColumns)
	if e.ChangedColumns == nil {
		cols = []byte("[]")
	}
	var prev, entry string
	if len(e.EntryHash) > 0 {
		prev, entry = hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.EntryHash)
	}
	row := []string{strconv.FormatInt(e.Seq, 10), e.EventID, e.OccurredAt.UTC().Format("2006-01-02T15:04:05.000000Z"),
		strconv.FormatUint(e.TxID, 10), e.ActionType, e.ResourceType, deref(e.ResourceID), e.Outcome, e.ActorID,
		deref(e.ActorIP), deref(e.ActorIPRaw), deref(e.ActorUserAgent), deref(e.RequestID), deref(e.TenantID),
		e.DBUser, deref(e.ApplicationName), deref(e.ClientAddr), string(cols), deref(e.BeforeState),
		deref(e.AfterState), deref(e.Details), prev, entry}
	if c.EscapeFormulas {
		for i, v := range row {
			if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
				row[i] = "'" + v
			}
		}
	}
	return c.w.Write(row)
}

// Flush writes buffered rows (and the header if no row was written) and returns any error.
func (c *CSVWriter) Flush() error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVColumns); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

// WriteCSV writes res's events as CSV (raw values: for scripts, not spreadsheets).
func WriteCSV(w io.Writer, res *Result) error {
	cw := NewCSVWriter(w)
	for i := range res.Events {
		if err := cw.Write(&res.Events[i]); err != nil {
			return err
		}
	}
	return cw.Flush()
}
