package archive_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func TestTenantPartition(t *testing.T) {
	tests := []struct {
		name   string
		tenant *string
		want   string
	}{
		{"Null", nil, "_none"},
		{"Empty", ptr(""), "_empty"},
		{"Plain", ptr("acme-Corp.1_x"), "acme-Corp.1_x"},
		{"LiteralNone", ptr("_none"), "%5Fnone"},
		{"LiteralEmpty", ptr("_empty"), "%5Fempty"},
		{"Slash", ptr("a/b"), "a%2Fb"},
		{"DotDot", ptr(".."), ".."},
		{"SpacesAndQuotes", ptr(`a b'"`), "a%20b%27%22"},
		{"Equals", ptr("k=v"), "k%3Dv"},
		{"Percent", ptr("100%"), "100%25"},
		{"Unicode", ptr("zoë"), "zo%C3%AB"},
		{"Control", ptr("a\x00\n"), "a%00%0A"},
		// Any role sets pgtrail.tenant_id: a long one must not make keys too long to write.
		{"Longest", ptr(strings.Repeat("t", 128)), strings.Repeat("t", 128)},
		{"TooLong", ptr(strings.Repeat("t", 129)), "_h" + sha256Prefix(strings.Repeat("t", 129))},
		{"TooLongEscaped", ptr(strings.Repeat("/", 43)), "_h" + sha256Prefix(strings.Repeat("/", 43))},
		{"Megabyte", ptr(strings.Repeat("x", 1<<20)), "_h" + sha256Prefix(strings.Repeat("x", 1<<20))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := archive.TenantPartition(tt.tenant)
			if got != tt.want {
				t.Errorf("TenantPartition = %q, want %q", got, tt.want)
			}
			// The partition is one safe key component.
			if err := archive.CheckKey("tenant=" + got); err != nil {
				t.Errorf("partition %q is not a valid key component: %v", got, err)
			}
		})
	}
}

func TestDataKey(t *testing.T) {
	day := time.Date(2024, 3, 1, 1, 30, 0, 0, time.FixedZone("UTC+5", 5*3600)) // 2024-02-29 UTC
	got := archive.DataKey(ptr("acme"), day, 1, 1234)
	want := "events/tenant=acme/dt=2024-02-29/00000000000000000001-00000000000000001234.parquet"
	if got != want {
		t.Errorf("DataKey = %q, want %q", got, want)
	}
	first, last, ok := archive.ParseDataKey(got)
	if !ok || first != 1 || last != 1234 {
		t.Errorf("ParseDataKey(%q) = %d, %d, %v", got, first, last, ok)
	}
}

func TestDigestKey(t *testing.T) {
	got := archive.DigestKey(5, 9, 12)
	if want := "digests/00000000000000000005-00000000000000000009/12.json"; got != want {
		t.Errorf("DigestKey = %q, want %q", got, want)
	}
	first, last, n, ok := archive.ParseDigestKey(got)
	if !ok || first != 5 || last != 9 || n != 12 {
		t.Errorf("ParseDigestKey(%q) = %d, %d, %d, %v", got, first, last, n, ok)
	}
}

func TestParseKeys_Invalid(t *testing.T) {
	dataKeys := []string{
		"events/tenant=a/dt=2024-01-01/1-2.parquet",
		"events/tenant=a/dt=2024-01-01/00000000000000000002-00000000000000000001.parquet",
		"events/tenant=a/dt=2024-01-01/00000000000000000000-00000000000000000001.parquet",
		"events/tenant=a/dt=2024-01-01/+0000000000000000001-00000000000000000001.parquet",
		"events/tenant=a/dt=2024-01-01/00000000000000000001-00000000000000000002.json",
		"other/00000000000000000001-00000000000000000002.parquet",
	}
	for _, k := range dataKeys {
		if _, _, ok := archive.ParseDataKey(k); ok {
			t.Errorf("ParseDataKey(%q) ok, want rejected", k)
		}
	}
	digestKeys := []string{
		"digests/00000000000000000001-00000000000000000002/01.json",
		"digests/00000000000000000001-00000000000000000002/-1.json",
		"digests/00000000000000000001-00000000000000000002/x.json",
		"digests/00000000000000000001-00000000000000000002/0.txt",
		"digests/00000000000000000001-00000000000000000002",
		"digests/1-2/0.json",
		"digests/00000000000000000001-00000000000000000002/sub/0.json",
	}
	for _, k := range digestKeys {
		if _, _, _, ok := archive.ParseDigestKey(k); ok {
			t.Errorf("ParseDigestKey(%q) ok, want rejected", k)
		}
	}
}

func sha256Prefix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
