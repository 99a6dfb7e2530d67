package archive_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/fileinput/fileinputtest"
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
	priv, err := archive.LoadPrivateKey(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	loadedPub, err := archive.LoadPublicKey(context.Background(), path+".pub")
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

func loadPriv(p string) error {
	_, err := archive.LoadPrivateKey(context.Background(), p)
	return err
}

func loadPub(p string) error {
	_, err := archive.LoadPublicKey(context.Background(), p)
	return err
}

// TestLoadKey_Hostile gives the key loaders what a wrong or planted path can be: a 1 GiB file (a
// database dump named by mistake, sparse here), a key followed by a megabyte of padding, a FIFO
// whose writer never writes. What must survive: memory (at most MaxKeyFileSize is read), the
// caller's control (the FIFO read ends with the context) and a message naming the file and the
// limit. (/dev/zero is tried on the real binary, under a memory limit, in cmd/pgtrail.)
func TestLoadKey_Hostile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if _, err := archive.WriteKeyFiles(key); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "dump.sql")
	if f, err := os.Create(huge); err != nil || f.Truncate(1<<30) != nil || f.Close() != nil {
		t.Fatalf("sparse file: %v", err)
	}
	padded := filepath.Join(dir, "padded.pub")
	pem, _ := os.ReadFile(key + ".pub")
	if err := os.WriteFile(padded, append(pem, make([]byte, 1<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := fileinputtest.StalledFIFO(t, dir, "fifo.pub")
	const limit = "more than 64 KiB, the limit for a key file"
	tests := []struct {
		name    string
		load    func(context.Context, string) error
		path    string
		wantErr string
	}{
		{"PrivateHuge", func(ctx context.Context, p string) error { _, err := archive.LoadPrivateKey(ctx, p); return err }, huge, huge + ": " + limit},
		{"PublicHuge", func(ctx context.Context, p string) error { _, err := archive.LoadPublicKey(ctx, p); return err }, huge, huge + ": " + limit},
		{"PublicPadded", func(ctx context.Context, p string) error { _, err := archive.LoadPublicKey(ctx, p); return err }, padded, padded + ": " + limit},
		{"PublicSilentFIFO", func(ctx context.Context, p string) error { _, err := archive.LoadPublicKey(ctx, p); return err }, fifo, "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tt.load(ctx, tt.path) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("load %s = %v, want an error containing %q", tt.path, err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("load %s still reading 5 s after it was started, 4.5 s after its context ended", tt.path)
			}
		})
	}
}
