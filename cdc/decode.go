package cdc

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgtrail/pgtrail"
)

// decoder turns pgoutput tuples of audit.events into events. pgoutput sends every value in its
// text output form, which is exactly what the canonical encoding hashes (jsonb text, inet text).
type decoder struct {
	types *pgtype.Map
}

func newDecoder() *decoder { return &decoder{types: pgtype.NewMap()} }

// decode maps a tuple to an Event by column name, so a column added by a later migration does
// not shift the others.
func (d *decoder) decode(rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData) (pgtrail.Event, int, error) {
	var e pgtrail.Event
	size := 0
	if len(tuple.Columns) != len(rel.Columns) {
		return e, 0, fmt.Errorf("tuple has %d columns, relation %d", len(tuple.Columns), len(rel.Columns))
	}
	for i, col := range tuple.Columns {
		name := rel.Columns[i].Name
		if col.DataType == pglogrepl.TupleDataTypeToast {
			return e, 0, fmt.Errorf("column %s: unchanged TOAST value in an insert", name)
		}
		null := col.DataType == pglogrepl.TupleDataTypeNull
		text := string(col.Data)
		size += len(col.Data)
		var err error
		switch name {
		case "seq":
			e.Seq, err = strconv.ParseInt(text, 10, 64)
		case "event_id":
			e.EventID = text
		case "occurred_at":
			err = d.types.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, col.Data, &e.OccurredAt)
			e.OccurredAt = e.OccurredAt.UTC()
		case "txid":
			e.TxID, err = strconv.ParseUint(text, 10, 64)
		case "action_type":
			e.ActionType = text
		case "resource_type":
			e.ResourceType = text
		case "resource_id":
			e.ResourceID = nullable(text, null)
		case "outcome":
			e.Outcome = text
		case "actor_id":
			e.ActorID = text
		case "actor_ip":
			e.ActorIP = nullable(text, null)
		case "actor_ip_raw":
			e.ActorIPRaw = nullable(text, null)
		case "actor_user_agent":
			e.ActorUserAgent = nullable(text, null)
		case "request_id":
			e.RequestID = nullable(text, null)
		case "tenant_id":
			e.TenantID = nullable(text, null)
		case "db_user":
			e.DBUser = text
		case "application_name":
			e.ApplicationName = nullable(text, null)
		case "client_addr":
			e.ClientAddr = nullable(text, null)
		case "changed_columns":
			e.ChangedColumns = []string{}
			err = d.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, col.Data, &e.ChangedColumns)
		case "before_state":
			e.BeforeState = nullable(text, null)
		case "after_state":
			e.AfterState = nullable(text, null)
		case "details":
			e.Details = nullable(text, null)
		case "prev_hash":
			e.PrevHash, err = decodeBytea(text)
		case "entry_hash":
			e.EntryHash, err = decodeBytea(text)
		}
		if err != nil {
			return e, 0, fmt.Errorf("column %s: %w", name, err)
		}
	}
	if e.Seq == 0 || e.EventID == "" || e.OccurredAt.Equal(time.Time{}) {
		return e, 0, fmt.Errorf("tuple lacks seq, event_id or occurred_at")
	}
	return e, size, nil
}

func nullable(s string, null bool) *string {
	if null {
		return nil
	}
	return &s
}

// decodeBytea reads bytea's hex text form (\x…), the server default since PostgreSQL 9.0.
func decodeBytea(s string) ([]byte, error) {
	if !strings.HasPrefix(s, `\x`) {
		return nil, fmt.Errorf("bytea not in hex format: %.10q", s)
	}
	return hex.DecodeString(s[2:])
}
