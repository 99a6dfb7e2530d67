package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func runKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "keygen", "keygen --out PATH [--json]")
	out := fs.String("out", "", "write the private key to PATH (mode 0600) and the public key to PATH.pub")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *out == "" {
		return fs.usageError(errors.New("expected: keygen --out PATH"))
	}
	pub, err := archive.WriteKeyFiles(*out)
	if err != nil {
		return err
	}
	pubB64 := base64.StdEncoding.EncodeToString(pub)
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]string{
			"private_key": *out, "public_key": *out + ".pub", "public_key_base64": pubB64})
	}
	fmt.Fprintf(e.stdout, "private key: %s (keep it secret; pgtrail stream --signing-key %s signs digests with it)\n", *out, *out)
	fmt.Fprintf(e.stdout, "public key:  %s (give it to whoever verifies the archive)\n", *out+".pub")
	fmt.Fprintf(e.stdout, "public key (base64): %s\n", pubB64)
	return nil
}
