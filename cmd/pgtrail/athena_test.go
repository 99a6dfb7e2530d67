package main

import (
	"strings"
	"testing"
)

func TestCLI_AthenaDDL(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout []string
		inStderr string
	}{
		{[]string{"athena", "ddl", "s3://audit/prod"}, 0, []string{
			"CREATE EXTERNAL TABLE IF NOT EXISTS `pgtrail`.`audit_events` (",
			"LOCATION 's3://audit/prod/events/'", "'projection.tenant.type' = 'injected'",
			"PARTITIONED BY (\n  `tenant` string,\n  `dt` string\n)"}, ""},
		{[]string{"athena", "ddl", "s3://audit", "--database", "compliance", "--table", "trail", "--tenants", "acme,globex"}, 0, []string{
			"`compliance`.`trail`", "LOCATION 's3://audit/events/'", "'projection.tenant.values' = 'acme,globex,_none'"}, ""},
		{[]string{"athena", "ddl", "file:///tmp/a"}, 2, nil, "not an s3:// URL"},
		{[]string{"athena", "ddl", "s3://audit", "--table", "Audit-Events"}, 2, nil, "table name"},
		{[]string{"athena", "ddl"}, 2, nil, "expected: athena ddl s3://bucket/prefix"},
		{[]string{"athena", "create", "s3://audit"}, 2, nil, "expected: athena ddl"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.inStderr) {
			t.Errorf("pgtrail %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.inStderr)
		}
		for _, w := range tt.inStdout {
			if !strings.Contains(out, w) {
				t.Errorf("pgtrail %s: stdout lacks %q:\n%s", strings.Join(tt.args, " "), w, out)
			}
		}
	}
}
