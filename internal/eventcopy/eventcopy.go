// Package eventcopy writes audit events in COPY's text format, for COPY audit.events FROM STDIN.
package eventcopy

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/pgtrail/pgtrail"
)

// Statement is the COPY statement WriteRow's rows are for.
const Statement = "COPY audit.events FROM STDIN"

// WriteRow writes e as a row of COPY's text format, columns in audit.events' order.
func WriteRow(b *bytes.Buffer, e *pgtrail.Event) {
	field := func(s string) {
		for i := 0; i < len(s); i++ {
			switch c := s[i]; c {
			case '\\':
				b.WriteString(`\\`)
			case '\t':
				b.WriteString(`\t`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('\t')
	}
	nullable := func(s *string) {
		if s == nil {
			b.WriteString(`\N` + "\t")
			return
		}
		field(*s)
	}
	field(strconv.FormatInt(e.Seq, 10))
	field(e.EventID)
	field(e.OccurredAt.UTC().Format("2006-01-02 15:04:05.999999+00"))
	field(strconv.FormatUint(e.TxID, 10))
	field(e.ActionType)
	field(e.ResourceType)
	nullable(e.ResourceID)
	field(e.Outcome)
	field(e.ActorID)
	nullable(e.ActorIP)
	nullable(e.ActorIPRaw)
	nullable(e.ActorUserAgent)
	nullable(e.RequestID)
	nullable(e.TenantID)
	field(e.DBUser)
	nullable(e.ApplicationName)
	nullable(e.ClientAddr)
	// changed_columns as an array literal, every element quoted (" and \ escaped); then the
	// field's own COPY escaping.
	var arr strings.Builder
	arr.WriteByte('{')
	for i, c := range e.ChangedColumns {
		if i > 0 {
			arr.WriteByte(',')
		}
		arr.WriteByte('"')
		for j := 0; j < len(c); j++ {
			if c[j] == '"' || c[j] == '\\' {
				arr.WriteByte('\\')
			}
			arr.WriteByte(c[j])
		}
		arr.WriteByte('"')
	}
	arr.WriteByte('}')
	field(arr.String())
	nullable(e.BeforeState)
	nullable(e.AfterState)
	nullable(e.Details)
	field(`\x` + hex.EncodeToString(e.PrevHash))
	b.WriteString(`\\x` + hex.EncodeToString(e.EntryHash))
	b.WriteByte('\n')
}
