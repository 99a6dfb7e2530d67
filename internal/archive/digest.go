package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// DigestVersion is the version of the digest format this package writes.
const DigestVersion = 1

// Digest describes one data file of a batch and chains it to the digest written before it. Its
// stored form is the JSON of this struct, fields in this order, followed by a newline.
type Digest struct {
	Version        int    `json:"version"`
	FileKey        string `json:"file_key"`    // the data file's key, relative to the sink
	FileSHA256     string `json:"file_sha256"` // hex SHA-256 of the data file's bytes
	Rows           int64  `json:"rows"`
	FirstSeq       int64  `json:"first_seq"` // of the file's first event
	LastSeq        int64  `json:"last_seq"`  // of the file's last event
	FirstEntryHash string `json:"first_entry_hash"`
	LastEntryHash  string `json:"last_entry_hash"`
	BatchFirstSeq  int64  `json:"batch_first_seq"`
	BatchLastSeq   int64  `json:"batch_last_seq"`
	// PrevDigestKey and PrevDigestSignature name the digest written just before this one (the
	// previous file of the batch, or the last digest of the previous batch); both are "" for the
	// very first digest of an archive.
	PrevDigestKey       string `json:"prev_digest_key"`
	PrevDigestSignature string `json:"prev_digest_signature"`
	// Signature is the base64 Ed25519 signature of SigningBytes, or "" when the archive is
	// written without a key.
	Signature string `json:"signature"`

	// Key is where the digest is stored; it is not part of the JSON.
	Key string `json:"-"`
}

// Errors VerifyDigest returns (wrapped), for callers that report them differently.
var (
	// ErrUnsigned: the digest has no signature.
	ErrUnsigned = errors.New("digest is not signed")
	// ErrBadSignature: the signature does not match the digest and the public key.
	ErrBadSignature = errors.New("digest signature does not verify")
)

// SigningBytes returns what the signature covers: the digest as compact JSON with Signature set to
// "", fields in the order of the struct, without HTML escaping and without a trailing newline.
func (d Digest) SigningBytes() []byte {
	d.Signature = ""
	return d.compactJSON()
}

// Marshal returns the digest's stored form: compact JSON and a newline.
func (d Digest) Marshal() []byte {
	return append(d.compactJSON(), '\n')
}

func (d Digest) compactJSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		panic(fmt.Sprintf("archive: marshal digest: %v", err)) // strings and integers only: cannot fail
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

// sign sets d.Signature with key, or to "" when key is nil. Ed25519 signatures are deterministic,
// so a retried batch produces the same digest bytes.
func (d *Digest) sign(key ed25519.PrivateKey) {
	d.Signature = ""
	if key != nil {
		d.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, d.SigningBytes()))
	}
}

// VerifyDigest checks d's signature against pub. It returns an error wrapping ErrUnsigned or
// ErrBadSignature, or describing a malformed signature or key.
func VerifyDigest(d Digest, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify digest %s: public key is %d bytes, want %d", d.Key, len(pub), ed25519.PublicKeySize)
	}
	if d.Signature == "" {
		return fmt.Errorf("verify digest %s: %w", d.Key, ErrUnsigned)
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("verify digest %s: malformed signature: %w", d.Key, ErrBadSignature)
	}
	if !ed25519.Verify(pub, d.SigningBytes(), sig) {
		return fmt.Errorf("verify digest %s: %w", d.Key, ErrBadSignature)
	}
	return nil
}

// ParseDigest decodes a stored digest. Unknown fields and other versions are errors: a field the
// signature covers must not be ignored.
func ParseDigest(data []byte) (Digest, error) {
	var d Digest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Digest{}, fmt.Errorf("parse digest: %w", err)
	}
	if dec.More() {
		return Digest{}, errors.New("parse digest: trailing data after the JSON object")
	}
	if d.Version != DigestVersion {
		return Digest{}, fmt.Errorf("parse digest: version %d, want %d", d.Version, DigestVersion)
	}
	return d, nil
}

// ReadDigests reads every digest of the archive in sink, in chain order (by batch, then by
// index within the batch), each with its Key set. An object under digests/ that is not named like
// a digest is an error.
func ReadDigests(ctx context.Context, sink Sink) ([]Digest, error) {
	keys, err := listDigestKeys(ctx, sink)
	if err != nil {
		return nil, err
	}
	return getDigests(ctx, sink, keys)
}

// digestKey is a parsed digest key.
type digestKey struct {
	key         string
	first, last int64
	n           int
}

// listDigestKeys lists the digest keys in chain order.
func listDigestKeys(ctx context.Context, sink Sink) ([]digestKey, error) {
	keys, err := sink.List(ctx, DigestsPrefix)
	if err != nil {
		return nil, fmt.Errorf("read digests: %w", err)
	}
	parsed := make([]digestKey, 0, len(keys))
	for _, k := range keys {
		first, last, n, ok := ParseDigestKey(k)
		if !ok {
			return nil, fmt.Errorf("read digests: unexpected object %s", k)
		}
		parsed = append(parsed, digestKey{key: k, first: first, last: last, n: n})
	}
	sort.Slice(parsed, func(i, j int) bool {
		a, b := parsed[i], parsed[j]
		if a.first != b.first {
			return a.first < b.first
		}
		if a.last != b.last {
			return a.last < b.last
		}
		return a.n < b.n
	})
	return parsed, nil
}

// getDigests fetches and parses the digests at keys, a few at a time, keeping their order.
func getDigests(ctx context.Context, sink Sink, keys []digestKey) ([]Digest, error) {
	const workers = 8
	digests := make([]Digest, len(keys))
	errs := make([]error, len(keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(keys)) {
		wg.Go(func() {
			for i := range next {
				data, err := sink.Get(ctx, keys[i].key)
				if err == nil {
					digests[i], err = ParseDigest(data)
				}
				if err != nil {
					errs[i] = fmt.Errorf("read digest %s: %w", keys[i].key, err)
					continue
				}
				digests[i].Key = keys[i].key
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return digests, nil
}
