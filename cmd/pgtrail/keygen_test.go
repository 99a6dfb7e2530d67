package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func TestCLI_Keygen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	code, out, errOut := runCLI(t, nil, "keygen", "--out", path)
	if code != 0 || !strings.Contains(out, "private key: "+path) || !strings.Contains(out, path+".pub") {
		t.Fatalf("keygen: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	priv, err := archive.LoadPrivateKey(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := archive.LoadPublicKey(context.Background(), path+".pub")
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("public key %v does not match the private key (%v)", pub, err)
	}
	if !strings.Contains(out, base64.StdEncoding.EncodeToString(pub)) {
		t.Errorf("stdout %q does not show the public key", out)
	}

	// Tried: keygen over an existing key. Must survive: the key, byte for byte (losing it would
	// orphan every digest it signed).
	before, _ := os.ReadFile(path)
	code, _, errOut = runCLI(t, nil, "keygen", "--out", path)
	if after, _ := os.ReadFile(path); code != 1 || !strings.Contains(errOut, "already exists") || string(after) != string(before) {
		t.Errorf("keygen over an existing key: exit %d, stderr %q, key changed %v; want exit 1 and the key kept",
			code, errOut, string(after) != string(before))
	}

	code, out, _ = runCLI(t, nil, "keygen", "--json", "--out", filepath.Join(dir, "other"))
	var rep map[string]string
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("keygen --json: exit %d, %v: %s", code, err, out)
	}
	raw, _ := base64.StdEncoding.DecodeString(rep["public_key_base64"])
	if rep["public_key"] != filepath.Join(dir, "other.pub") || len(raw) != ed25519.PublicKeySize {
		t.Errorf("keygen --json = %v", rep)
	}

	for _, tt := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"keygen"}, 2, "expected: keygen --out PATH"},
		{[]string{"keygen", "--out", path + "2", "extra"}, 2, "expected: keygen --out PATH"},
		{[]string{"keygen", "--out", filepath.Join(dir, "missing", "k")}, 1, "no such file or directory"},
	} {
		code, _, errOut := runCLI(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.inStderr) {
			t.Errorf("pgtrail %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.inStderr)
		}
	}
}
