package archive_test

import (
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func TestAthenaDDL(t *testing.T) {
	ddl, err := archive.AthenaDDL(archive.AthenaTable{URL: "s3://audit-bucket/prod/trail/", Database: "pgtrail", Table: "audit_events"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CREATE EXTERNAL TABLE IF NOT EXISTS `pgtrail`.`audit_events` (\n  `seq` bigint,\n  `event_id` string,\n  `occurred_at` timestamp,",
		"  `changed_columns` array<string>,",
		"  `entry_hash` string\n)\nPARTITIONED BY (\n  `tenant` string,\n  `dt` string\n)\nSTORED AS PARQUET\n",
		"LOCATION 's3://audit-bucket/prod/trail/events/'\n",
		"'projection.dt.type' = 'date'", "'projection.dt.format' = 'yyyy-MM-dd'",
		"'projection.dt.range' = 'NOW-10YEARS,NOW'", "'projection.tenant.type' = 'injected'",
		"'storage.location.template' = 's3://audit-bucket/prod/trail/events/tenant=${tenant}/dt=${dt}/'",
	}
	for _, w := range want {
		if !strings.Contains(ddl, w) {
			t.Errorf("DDL lacks %q:\n%s", w, ddl)
		}
	}
	// Every Parquet column is declared, in file order.
	pos := 0
	for _, c := range archive.Columns() {
		i := strings.Index(ddl[pos:], "`"+c.Name+"` "+c.AthenaType)
		if i < 0 {
			t.Errorf("column %s %s missing or out of order", c.Name, c.AthenaType)
			continue
		}
		pos += i
	}

	enum, err := archive.AthenaDDL(archive.AthenaTable{URL: "s3://b", Database: "d", Table: "t",
		Tenants: []string{"acme", "a/b", "acme", "_none"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"LOCATION 's3://b/events/'", "'projection.tenant.type' = 'enum'",
		"'projection.tenant.values' = 'acme,a%2Fb,%5Fnone,_none'"} {
		if !strings.Contains(enum, w) {
			t.Errorf("DDL with tenants lacks %q:\n%s", w, enum)
		}
	}
}

func TestAthenaDDL_Errors(t *testing.T) {
	tests := []struct {
		name    string
		table   archive.AthenaTable
		wantErr string
	}{
		{"FileURL", archive.AthenaTable{URL: "file:///tmp/a", Database: "d", Table: "t"}, "not an s3:// URL"},
		{"BadURL", archive.AthenaTable{URL: "s4://b", Database: "d", Table: "t"}, "unsupported scheme"},
		{"QuoteInPrefix", archive.AthenaTable{URL: "s3://b/it's", Database: "d", Table: "t"}, "quote"},
		{"UpperCaseTable", archive.AthenaTable{URL: "s3://b", Database: "d", Table: "Events"}, "table name"},
		{"InjectionInDatabase", archive.AthenaTable{URL: "s3://b", Database: "d`; DROP", Table: "t"}, "database name"},
		{"EmptyTable", archive.AthenaTable{URL: "s3://b", Database: "d"}, "table name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := archive.AthenaDDL(tt.table); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("AthenaDDL = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
