package archive

import (
	"fmt"

	"github.com/parquet-go/parquet-go"
)

// Column is a column of the archive's Parquet files, with the type Athena (Hive DDL) reads it as.
type Column struct {
	Name       string
	AthenaType string
}

// Columns returns the columns of the archive's Parquet files in file order, read from the schema
// EncodeParquet writes, so that a table definition cannot drift from the files.
func Columns() []Column {
	fields := parquet.SchemaOf(parquetRow{}).Fields()
	cols := make([]Column, len(fields))
	for i, f := range fields {
		cols[i] = Column{Name: f.Name(), AthenaType: athenaType(f)}
	}
	return cols
}

func athenaType(f parquet.Field) string {
	switch t := f.Type().String(); t {
	case "INT(64,true)":
		return "bigint"
	case "STRING":
		return "string"
	case "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)":
		return "timestamp"
	case "LIST":
		return "array<" + athenaType(f.Fields()[0].Fields()[0]) + ">"
	default:
		panic(fmt.Sprintf("archive: no Athena type for Parquet column %s of type %s", f.Name(), t))
	}
}
