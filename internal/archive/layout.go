package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// The archive's layout, relative to the sink (an s3:// URL's prefix comes in front):
//
//	pgtrail-archive.json
//	events/tenant=<t>/dt=<YYYY-MM-DD>/<batchFirst>-<batchLast>.parquet
//	digests/<batchFirst>-<batchLast>/<n>.json
//
// pgtrail-archive.json (MarkerKey) is written when the archive is made, before its first batch.
// t is TenantPartition(tenant_id); dt is the UTC date of occurred_at; batchFirst and batchLast are
// the seq range of the whole batch the file belongs to, zero-padded to 20 digits, so that every
// file of a batch has the same name and keys sort by seq. Digest n (0, 1, …) describes the batch's
// n-th data file in key order. Keys inside digests are relative to the sink too.
const (
	// EventsPrefix is where the data files are.
	EventsPrefix = "events/"
	// DigestsPrefix is where the digests are.
	DigestsPrefix = "digests/"
)

// Partition values for tenants that have no text of their own. A tenant_id starting with '_' is
// escaped (%5F), so these never collide with one.
const (
	TenantNone  = "_none"  // tenant_id IS NULL
	TenantEmpty = "_empty" // tenant_id = ''
)

// maxTenantPartition bounds a tenant=<t> value: a key component (and a file name in a file://
// archive, at most 255 bytes) must stay short whatever tenant_id a writer sets, or a batch could
// never be written and the trail would stop.
const maxTenantPartition = 128

// TenantPartition returns the tenant=<t> value of a tenant_id: TenantNone for NULL, TenantEmpty
// for ”, else the text with every byte outside [A-Za-z0-9._-], and a leading '_', written as %XX;
// when that is longer than 128 bytes, "_h" and the first 32 hex digits of the tenant_id's SHA-256.
func TenantPartition(tenant *string) string {
	switch {
	case tenant == nil:
		return TenantNone
	case *tenant == "":
		return TenantEmpty
	case len(*tenant) > maxTenantPartition:
		return hashedTenant(*tenant)
	}
	var b strings.Builder
	for i := 0; i < len(*tenant); i++ {
		c := (*tenant)[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' ||
			c == '_' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	if b.Len() > maxTenantPartition {
		return hashedTenant(*tenant)
	}
	return b.String()
}

// hashedTenant is the partition of a tenant_id too long to spell out. It starts with '_', which
// an escaped tenant_id never does.
func hashedTenant(tenant string) string {
	sum := sha256.Sum256([]byte(tenant))
	return "_h" + hex.EncodeToString(sum[:16])
}

// DataKey returns the key of the data file holding the events of tenant on day (UTC) of the batch
// batchFirst..batchLast.
func DataKey(tenant *string, day time.Time, batchFirst, batchLast int64) string {
	return EventsPrefix + "tenant=" + TenantPartition(tenant) + "/dt=" + day.UTC().Format(time.DateOnly) +
		"/" + seqRange(batchFirst, batchLast) + ".parquet"
}

// DigestKey returns the key of the n-th digest of the batch batchFirst..batchLast.
func DigestKey(batchFirst, batchLast int64, n int) string {
	return DigestsPrefix + seqRange(batchFirst, batchLast) + "/" + strconv.Itoa(n) + ".json"
}

// ParseDataKey returns the batch range in the name of a data file key.
func ParseDataKey(key string) (batchFirst, batchLast int64, ok bool) {
	if !strings.HasPrefix(key, EventsPrefix) {
		return 0, 0, false
	}
	name, found := strings.CutSuffix(path.Base(key), ".parquet")
	if !found {
		return 0, 0, false
	}
	return parseSeqRange(name)
}

// ParseDigestKey returns the batch range and index of a digest key.
func ParseDigestKey(key string) (batchFirst, batchLast int64, n int, ok bool) {
	rest, found := strings.CutPrefix(key, DigestsPrefix)
	if !found {
		return 0, 0, 0, false
	}
	dir, name, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	name, found = strings.CutSuffix(name, ".json")
	if !found {
		return 0, 0, 0, false
	}
	n, err := strconv.Atoi(name)
	if err != nil || n < 0 || strconv.Itoa(n) != name {
		return 0, 0, 0, false
	}
	batchFirst, batchLast, ok = parseSeqRange(dir)
	return batchFirst, batchLast, n, ok
}

func seqRange(first, last int64) string {
	return fmt.Sprintf("%020d-%020d", first, last)
}

func parseSeqRange(s string) (first, last int64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found || !isDigits(a, 20) || !isDigits(b, 20) {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 1 || last < first {
		return 0, 0, false
	}
	return first, last, true
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
