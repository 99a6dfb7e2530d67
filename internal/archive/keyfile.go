package archive

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/pgtrail/pgtrail/internal/fileinput"
)

// MaxKeyFileSize bounds what LoadPrivateKey and LoadPublicKey read: a PEM Ed25519 key is about
// 120 bytes, and a path to /dev/zero or a huge file must not take the machine's memory.
const MaxKeyFileSize = 64 << 10

// GenerateKey returns a new Ed25519 key pair for signing digests.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("archive: generate key: %v", err)) // crypto/rand does not fail
	}
	return pub, priv
}

// WriteKeyFiles generates a key pair and writes the private key to path (PKCS#8 PEM, mode 0600)
// and the public key to path+".pub" (PKIX PEM, 0644), both fsynced. It refuses to overwrite
// either file. It returns the public key.
func WriteKeyFiles(path string) (ed25519.PublicKey, error) {
	pubPath := path + ".pub"
	for _, p := range []string{path, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("write key: %s already exists; refusing to overwrite a key", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("write key: %w", err)
		}
	}
	pub, priv := GenerateKey()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := writeExclusive(path, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := writeExclusive(pubPath, 0o644, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})); err != nil {
		// Without its public half the private key is useless; leave nothing behind for a retry.
		return nil, errors.Join(fmt.Errorf("write key: %w", err), os.Remove(path))
	}
	return pub, nil
}

func writeExclusive(path string, mode os.FileMode, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadPrivateKey reads an Ed25519 private key written by WriteKeyFiles (or `openssl genpkey
// -algorithm ed25519`). It reads at most MaxKeyFileSize bytes, and stops when ctx ends.
func LoadPrivateKey(ctx context.Context, path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(ctx, path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load private key %s: a %T, want Ed25519", path, key)
	}
	return priv, nil
}

// LoadPublicKey reads an Ed25519 public key written by WriteKeyFiles (the .pub file), as
// LoadPrivateKey reads a private one.
func LoadPublicKey(ctx context.Context, path string) (ed25519.PublicKey, error) {
	der, err := readPEM(ctx, path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("load public key %s: a %T, want Ed25519", path, key)
	}
	return pub, nil
}

func readPEM(ctx context.Context, path, blockType string) ([]byte, error) {
	data, err := fileinput.ReadFile(ctx, path, MaxKeyFileSize, "a key file")
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("load key %s: no PEM block", path)
	}
	if block.Type != blockType {
		return nil, fmt.Errorf("load key %s: PEM block %q, want %q", path, block.Type, blockType)
	}
	return block.Bytes, nil
}
