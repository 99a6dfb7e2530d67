package archive

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// AthenaTable describes the Athena table over an archive.
type AthenaTable struct {
	// URL is the archive's s3://bucket/prefix URL.
	URL string
	// Database and Table name the table; lower-case letters, digits and underscores.
	Database, Table string
	// Tenants, when set, makes the tenant partition an enum of these tenant_ids (plus tenants
	// without an id), so that queries may span tenants. Empty makes it injected: every query must
	// then say which tenants it reads (WHERE tenant = '…' or tenant IN (…)).
	Tenants []string
}

var athenaIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,127}$`)

var athenaTemplate = template.Must(template.New("ddl").Parse(`CREATE EXTERNAL TABLE IF NOT EXISTS ` +
	"`{{.Database}}`.`{{.Table}}`" + ` (
{{- range $i, $c := .Columns}}{{if $i}},{{end}}
  ` + "`{{$c.Name}}`" + ` {{$c.AthenaType}}
{{- end}}
)
PARTITIONED BY (
  ` + "`tenant`" + ` string,
  ` + "`dt`" + ` string
)
STORED AS PARQUET
LOCATION '{{.Location}}'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = 'NOW-10YEARS,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
{{- if .Enum}}
  'projection.tenant.type' = 'enum',
  'projection.tenant.values' = '{{.Enum}}',
{{- else}}
  'projection.tenant.type' = 'injected',
{{- end}}
  'storage.location.template' = '{{.Location}}tenant=${tenant}/dt=${dt}/'
)
`))

// AthenaDDL returns the CREATE EXTERNAL TABLE statement for the archive at t.URL: the columns of
// the Parquet files (Columns), partitioned by tenant and dt with partition projection, so that
// new days and tenants need no MSCK REPAIR or Glue crawler. Partition values are those of the
// keys: TenantPartition(tenant_id) and the UTC date.
func AthenaDDL(t AthenaTable) (string, error) {
	u, err := ParseURL(t.URL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "s3" {
		return "", fmt.Errorf("athena table: %s is not an s3:// URL: Athena reads S3 only", t.URL)
	}
	if strings.ContainsAny(u.Path, `'"\${}`) {
		return "", fmt.Errorf("athena table: prefix %q holds a quote, backslash, $ or brace, which the DDL cannot carry", u.Path)
	}
	for _, id := range []struct{ flag, v string }{{"database", t.Database}, {"table", t.Table}} {
		if !athenaIdent.MatchString(id.v) {
			return "", fmt.Errorf("athena table: %s name %q: want lower-case letters, digits and _", id.flag, id.v)
		}
	}
	location := "s3://" + u.Host + "/"
	if u.Path != "" {
		location += u.Path + "/"
	}
	location += EventsPrefix
	var enum []string
	for _, tenant := range t.Tenants {
		if p := TenantPartition(&tenant); !slices.Contains(enum, p) {
			enum = append(enum, p)
		}
	}
	if len(enum) > 0 && !slices.Contains(enum, TenantNone) {
		enum = append(enum, TenantNone) // events without a tenant_id
	}
	var b strings.Builder
	err = athenaTemplate.Execute(&b, map[string]any{
		"Database": t.Database, "Table": t.Table, "Columns": Columns(), "Location": location,
		"Enum": strings.Join(enum, ","),
	})
	if err != nil {
		return "", fmt.Errorf("athena table: %w", err)
	}
	return b.String(), nil
}
