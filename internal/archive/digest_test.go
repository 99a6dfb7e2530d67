package archive_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func sampleDigest() archive.Digest {
	return archive.Digest{
		Version: 1, FileKey: "events/tenant=a&b/dt=2024-01-01/00000000000000000001-00000000000000000002.parquet",
		FileSHA256: strings.Repeat("ab", 32), Rows: 2, FirstSeq: 1, LastSeq: 2,
		FirstEntryHash: strings.Repeat("01", 32), LastEntryHash: strings.Repeat("02", 32),
		BatchFirstSeq: 1, BatchLastSeq: 2, Key: "digests/00000000000000000001-00000000000000000002/0.json",
	}
}

func TestDigest_Marshal(t *testing.T) {
	d := sampleDigest()
	d.Signature = "c2ln"
	got := string(d.Marshal())
	want := `{"version":1,"file_key":"events/tenant=a&b/dt=2024-01-01/00000000000000000001-00000000000000000002.parquet",` +
		`"file_sha256":"` + strings.Repeat("ab", 32) + `","rows":2,"first_seq":1,"last_seq":2,` +
		`"first_entry_hash":"` + strings.Repeat("01", 32) + `","last_entry_hash":"` + strings.Repeat("02", 32) + `",` +
		`"batch_first_seq":1,"batch_last_seq":2,"prev_digest_key":"","prev_digest_signature":"","signature":"c2ln"}` + "\n"
	if got != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, want)
	}
	if signing := string(d.SigningBytes()); signing != strings.Replace(strings.TrimSuffix(want, "\n"), `"c2ln"`, `""`, 1) {
		t.Errorf("SigningBytes = %s, want the JSON with an empty signature", signing)
	}
	parsed, err := archive.ParseDigest(d.Marshal())
	parsed.Key = d.Key
	if err != nil || parsed != d {
		t.Errorf("ParseDigest(Marshal) = %+v, %v; want %+v", parsed, err, d)
	}
}

func TestVerifyDigest(t *testing.T) {
	pub, priv := archive.GenerateKey()
	otherPub, _ := archive.GenerateKey()
	signed := sampleDigest()
	signed.Signature = sign(priv, signed)
	tests := []struct {
		name    string
		mutate  func(d *archive.Digest)
		pub     ed25519.PublicKey
		wantErr error
	}{
		{"Valid", func(*archive.Digest) {}, pub, nil},
		{"OtherKey", func(*archive.Digest) {}, otherPub, archive.ErrBadSignature},
		{"RowsChanged", func(d *archive.Digest) { d.Rows++ }, pub, archive.ErrBadSignature},
		{"FileHashChanged", func(d *archive.Digest) { d.FileSHA256 = strings.Repeat("cd", 32) }, pub, archive.ErrBadSignature},
		{"ChainRelinked", func(d *archive.Digest) { d.PrevDigestKey = "digests/x/0.json" }, pub, archive.ErrBadSignature},
		{"Unsigned", func(d *archive.Digest) { d.Signature = "" }, pub, archive.ErrUnsigned},
		{"GarbageSignature", func(d *archive.Digest) { d.Signature = "!!" }, pub, archive.ErrBadSignature},
		{"KeyIsNotSigned", func(d *archive.Digest) { d.Key = "elsewhere" }, pub, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := signed
			tt.mutate(&d)
			err := archive.VerifyDigest(d, tt.pub)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyDigest = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if err := archive.VerifyDigest(signed, pub[:5]); err == nil {
		t.Errorf("VerifyDigest with a truncated public key = nil")
	}
}

func TestParseDigest_Errors(t *testing.T) {
	good := sampleDigest().Marshal()
	tests := map[string][]byte{
		"UnknownField":   bytes.Replace(good, []byte(`{"version":1,`), []byte(`{"version":1,"extra":true,`), 1),
		"OtherVersion":   bytes.Replace(good, []byte(`{"version":1,`), []byte(`{"version":2,`), 1),
		"TrailingData":   append(bytes.Clone(good), []byte(`{}`)...),
		"NotJSON":        []byte("PAR1"),
		"WrongFieldType": bytes.Replace(good, []byte(`"rows":2`), []byte(`"rows":"2"`), 1),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if d, err := archive.ParseDigest(data); err == nil {
				t.Errorf("ParseDigest = %+v, want an error", d)
			}
		})
	}
}
