package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// EnableTLS turns on TLS in the cluster, with a self-signed certificate made for it, and reloads
// the configuration: connections with sslmode=require then speak TLS, as most production servers
// (and every managed one) make clients do. Existing connections are unaffected. Not for an
// external server.
func (c *Cluster) EnableTLS(t testing.TB) {
	t.Helper()
	c.skipExternal(t, "EnableTLS")
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := c.enableTLS(ctx); err != nil {
		t.Fatalf("testenv: enable TLS: %v", err)
	}
}

func (c *Cluster) enableTLS(ctx context.Context) error {
	cert, key, err := selfSigned()
	if err != nil {
		return err
	}
	// PostgreSQL refuses a key file that others can read, or that is not its user's.
	for name, data := range map[string][]byte{"server.crt": cert, "server.key": key} {
		path := filepath.Join(c.dataDir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
		if c.cred != nil {
			if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return fmt.Errorf("hand %s to the postgres user: %w", name, err)
			}
		}
	}
	return errors.Join(c.adminExec(ctx, "ALTER SYSTEM SET ssl = on"), c.adminExec(ctx, "SELECT pg_reload_conf()"))
}

// selfSigned returns a PEM certificate for 127.0.0.1 and localhost, valid for a day, and its key.
func selfSigned() (cert, key []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pgtrail test cluster"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
