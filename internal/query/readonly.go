package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/duckdb/duckdb-go/v2"
)

// ErrRefused is wrapped by Run's error when the query would do more than read the archive's
// files: a statement other than one SELECT (COPY, ATTACH, SET, INSTALL, CREATE, EXPORT, …), a
// function that writes or runs SQL given as text, or a file the table does not cover. Nothing
// was written.
var ErrRefused = errors.New("refused")

// The session's settings (setup) already forbid files other than the archive's, extensions and
// changing the settings. They do not stop a write into one of those files: DuckDB's allowed
// paths are allowed for writing as well, so COPY … TO or enable_logging() could replace an
// archived file. So the query is checked before it runs: DuckDB parses it (json_serialize_sql,
// which serializes SELECT statements only, so COPY, ATTACH, SET, PRAGMA, CALL and the rest are
// refused by the parser, not by a list of ours), it must be a single statement, and the functions
// it names must not write or run SQL of their own; then its prepared statement type must be
// SELECT, in case a later DuckDB serializes more than SELECT.

// tableFunctions are the table functions a query may call in FROM: generators, readers (which
// reach only the files setup allows) and the catalog. Any other, including one a later DuckDB
// adds, is refused until it is added here.
var tableFunctions = setOf(
	"range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
	"read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
	"parquet_kv_metadata", "parquet_full_metadata", "parquet_bloom_probe",
	"read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_json_objects",
	"read_json_objects_auto", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "read_text",
	"read_blob", "sniff_csv", "glob",
	"duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
	"duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_schemas", "duckdb_sequences",
	"duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views", "duckdb_variables",
	"duckdb_extensions", "duckdb_memory", "duckdb_temporary_files", "duckdb_optimizers",
	"pragma_table_info", "table_info", "pragma_show", "show", "show_tables", "show_tables_expanded",
	"show_databases", "summary", "pragma_version", "version", "pragma_platform", "platform",
	"pg_timezone_names", "icu_calendar_names", "pragma_collations", "collations", "histogram",
	"histogram_values",
)

// refusedFunctions write (logs to a file of the caller's choosing) or run SQL given as text,
// which the check cannot see into; refused wherever they appear, not only in FROM.
var refusedFunctions = setOf(
	"enable_logging", "disable_logging", "truncate_duckdb_logs", "write_log",
	"query", "query_table", "json_execute_serialized_sql",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkReadOnly returns an error wrapping ErrRefused unless q is one SELECT that calls no
// function that writes; a parse error is returned as DuckDB words it. It runs nothing of q.
func checkReadOnly(ctx context.Context, conn *sql.Conn, q string) error {
	var serialized string
	if err := conn.QueryRowContext(ctx, "SELECT CAST(json_serialize_sql(CAST($1 AS VARCHAR)) AS VARCHAR)", q).Scan(&serialized); err != nil {
		return fmt.Errorf("query: check the query: %w", err)
	}
	var parsed struct {
		Error      bool   `json:"error"`
		ErrorType  string `json:"error_type"`
		Statements []any  `json:"statements"`
	}
	if err := json.Unmarshal([]byte(serialized), &parsed); err != nil {
		return fmt.Errorf("query: check the query: %w", err)
	}
	switch {
	case parsed.Error && parsed.ErrorType != "parser":
		return notSelect(q)
	case !parsed.Error && len(parsed.Statements) > 1:
		return fmt.Errorf("query: %w: %d statements; query runs one SELECT and writes nothing", ErrRefused, len(parsed.Statements))
	case !parsed.Error:
		if err := checkFunctions(parsed.Statements); err != nil {
			return err
		}
	}
	// A parse error or an empty query falls through: the driver's Prepare (not PrepareContext,
	// which runs every statement but the last) refuses more than one statement and never
	// executes, so DuckDB's own message, with the line and position, reaches the user.
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("query: check the query: unexpected driver connection %T", dc)
		}
		st, err := c.Prepare(q)
		if err != nil {
			return fmt.Errorf("query: %w", refusal(err))
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return fmt.Errorf("query: check the query: unexpected driver statement %T", st)
		}
		typ, err := ds.StatementType()
		if err != nil {
			return fmt.Errorf("query: check the query: %w", err)
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT {
			return notSelect(q)
		}
		return nil
	})
}

// checkFunctions refuses the functions the serialized statements call that may write.
func checkFunctions(tree any) error {
	switch n := tree.(type) {
	case []any:
		for _, e := range n {
			if err := checkFunctions(e); err != nil {
				return err
			}
		}
	case map[string]any:
		name, _ := n["function_name"].(string)
		if n["type"] == "TABLE_FUNCTION" {
			fn, _ := n["function"].(map[string]any)
			name, _ = fn["function_name"].(string)
			if !refusedFunctions[strings.ToLower(name)] && !tableFunctions[strings.ToLower(name)] {
				return fmt.Errorf("query: %w: table function %s() is not among those query allows (readers of the archive's files, generators, the catalog)", ErrRefused, name)
			}
		}
		if refusedFunctions[strings.ToLower(name)] {
			return fmt.Errorf("query: %w: %s() writes or runs SQL of its own; query runs one SELECT and writes nothing", ErrRefused, name)
		}
		for _, e := range n {
			if err := checkFunctions(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// notSelect is the refusal of a statement that is not a plain SELECT, named by its first word.
func notSelect(q string) error {
	what := keyword(q)
	switch what {
	case "":
		what = "the statement is not a SELECT"
	case "SELECT", "WITH", "FROM", "VALUES", "DESCRIBE", "SHOW", "SUMMARIZE":
		what = "this " + what + " has a part that is not a query (PIVOT?)"
	default:
		what += " is not a SELECT"
	}
	return fmt.Errorf("query: %w: %s; query runs one SELECT and writes nothing", ErrRefused, what)
}

// keyword returns q's first word, upper-cased, skipping comments and parentheses.
func keyword(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n(")
		switch {
		case strings.HasPrefix(q, "--"):
			_, q, _ = strings.Cut(q, "\n")
		case strings.HasPrefix(q, "/*"):
			_, q, _ = strings.Cut(q, "*/")
		default:
			end := strings.IndexFunc(q, func(r rune) bool { return !unicode.IsLetter(r) && r != '_' })
			if end < 0 {
				end = len(q)
			}
			return strings.ToUpper(q[:end])
		}
	}
}

// refusal marks DuckDB's permission errors (a file outside those allowed, an extension) as
// ErrRefused.
func refusal(err error) error {
	var de *duckdb.Error
	if errors.As(err, &de) && de.Type == duckdb.ErrorTypePermission {
		return fmt.Errorf("%w: the query reads the archive's files and nothing else: %w", ErrRefused, err)
	}
	return err
}
