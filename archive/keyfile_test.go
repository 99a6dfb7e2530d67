package archive_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/archive"
)

func TestWriteKeyFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	pub, err := archive.WriteKeyFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v; want mode %v", p, err, fi.Mode().Perm(), mode)
		}
	}
	priv, err := archive.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	loadedPub, err := archive.LoadPublicKey(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !loadedPub.Equal(pub) || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Errorf("loaded keys do not match the written pair")
	}
	sig := ed25519.Sign(priv, []byte("digest"))
	if !ed25519.Verify(loadedPub, []byte("digest"), sig) {
		t.Errorf("signature by the loaded private key does not verify with the loaded public key")
	}
	raw, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(raw), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("private key file is not PKCS#8 PEM: %.40q", raw)
	}
}

func TestWriteKeyFiles_RefusesOverwrite(t *testing.T) {
	// Tried: writing a key where the private or the public file exists. Must survive: the
	// existing files, byte for byte, and no half-written pair.
	for _, existing := range []string{"", ".pub"} {
		t.Run("Existing"+existing, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(path+existing, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := archive.WriteKeyFiles(path); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("WriteKeyFiles = %v, want a refusal", err)
			}
			if got, _ := os.ReadFile(path + existing); string(got) != "precious" {
				t.Errorf("existing file changed to %q", got)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Errorf("directory holds %d files, want only the existing one", len(entries))
			}
		})
	}
}

func TestLoadKey_Errors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	if _, err := archive.WriteKeyFiles(path); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	tests := []struct {
		name    string
		load    func(string) error
		path    string
		wantErr string
	}{
		{"PrivateMissing", loadPriv, filepath.Join(dir, "missing"), "no such file"},
		{"PrivateNotPEM", loadPriv, junk, "no PEM block"},
		{"PrivateGivenPublic", loadPriv, path + ".pub", `"PUBLIC KEY", want "PRIVATE KEY"`},
		{"PublicGivenPrivate", loadPub, path, `"PRIVATE KEY", want "PUBLIC KEY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.load(tt.path); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("load %s = %v, want an error containing %q", tt.path, err, tt.wantErr)
			}
		})
	}
}

func loadPriv(p string) error { _, err := archive.LoadPrivateKey(p); return err }
func loadPub(p string) error  { _, err := archive.LoadPublicKey(p); return err }
