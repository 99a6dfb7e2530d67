package verify

import "github.com/jackc/pgx/v5/pgconn"

// Paced tells whether conn reads through a pacer (PaceDial), as verify db finds it.
func Paced(conn *pgconn.PgConn) bool { return pacerOf(conn) != nil }
