package verify

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/pace"
)

// Paced tells whether conn reads through a pacer (pace.Dial), as verify db finds it.
func Paced(conn *pgconn.PgConn) bool { return pace.Of(conn) != nil }

// SetClock makes the verifier take now as the time of day.
func (v *Verifier) SetClock(now func() time.Time) { v.now = now }
