package cdc

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgtrail/pgtrail"
)

// decoder turns pgoutput tuples of audit.events into events. pgoutput sends every value in its
// text output form, which is exactly what the canonical encoding hashes (jsonb text, inet text),
// and what pgtrail.Event.SetText reads. types reads the text[] columns of pgtrail's own tables
// (audit.audited_tables).
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
		size += len(col.Data)
		if _, err := e.SetText(name, col.Data, col.DataType == pglogrepl.TupleDataTypeNull); err != nil {
			return e, 0, err
		}
	}
	if e.Seq == 0 || e.EventID == "" || e.OccurredAt.Equal(time.Time{}) {
		return e, 0, fmt.Errorf("tuple lacks seq, event_id or occurred_at")
	}
	return e, size, nil
}
