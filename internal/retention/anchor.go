package retention

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AnchorVersion is the version of the anchor format this package writes.
const AnchorVersion = 1

// anchorDomain is prefixed to an anchor's signing bytes, so that an anchor signature can never
// pass for a digest signature made with the same key, or the other way round.
const anchorDomain = "pgtrail-anchor-v1\n"

// anchorTime is how PrunedAt is written: UTC with microseconds, as timestamptz stores it.
const anchorTime = "2006-01-02T15:04:05.000000Z"

// Anchor is a row of audit.chain_anchors: a signed checkpoint left by a prune. Entries FirstSeq to
// Seq were removed from the database (they are in Archive); the chain in audit.events continues
// at Seq+1, whose prev_hash must equal EntryHash. A verifier of the database starts from the anchor
// with the highest Seq after checking its signature with the archive's public key (not with
// PublicKey, which only says which key signed), and that each anchor's FirstSeq is the previous
// anchor's Seq + 1 (1 for the first).
type Anchor struct {
	Version    int      `json:"version"`
	Seq        int64    `json:"seq"`
	EntryHash  string   `json:"entry_hash"` // hex
	FirstSeq   int64    `json:"first_seq"`
	Partitions []string `json:"partitions"` // sorted
	Rows       int64    `json:"rows"`
	Archive    string   `json:"archive"`
	PrunedAt   string   `json:"pruned_at"`  // UTC, microseconds: 2006-01-02T15:04:05.000000Z
	PublicKey  string   `json:"public_key"` // base64 ed25519 public key
	// Signature is the base64 Ed25519 signature of SigningBytes.
	Signature string `json:"signature"`
}

// Errors Verify returns (wrapped).
var (
	// ErrAnchorSignature: the anchor's signature does not verify with the trusted key.
	ErrAnchorSignature = errors.New("anchor signature does not verify")
	// ErrAnchorKey: the anchor names another public key than the trusted one.
	ErrAnchorKey = errors.New("anchor was signed with another key")
)

// SigningBytes returns what the signature covers: "pgtrail-anchor-v1\n" and the anchor as compact
// JSON, fields in struct order, with Signature "".
func (a Anchor) SigningBytes() []byte {
	a.Signature = ""
	var buf bytes.Buffer
	buf.WriteString(anchorDomain)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		panic(fmt.Sprintf("retention: marshal anchor: %v", err)) // strings and integers only
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

// sign sets PublicKey and Signature with key.
func (a *Anchor) sign(key ed25519.PrivateKey) {
	a.PublicKey = base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	a.Signature = ""
	a.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, a.SigningBytes()))
}

// Verify checks the anchor's signature against pub, the archive's trusted public key.
func (a Anchor) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify anchor seq %d: public key is %d bytes, want %d", a.Seq, len(pub), ed25519.PublicKeySize)
	}
	if a.PublicKey != base64.StdEncoding.EncodeToString(pub) {
		return fmt.Errorf("verify anchor seq %d: %w", a.Seq, ErrAnchorKey)
	}
	sig, err := base64.StdEncoding.DecodeString(a.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, a.SigningBytes(), sig) {
		return fmt.Errorf("verify anchor seq %d: %w", a.Seq, ErrAnchorSignature)
	}
	return nil
}

// EntryHashBytes returns EntryHash decoded.
func (a Anchor) EntryHashBytes() ([]byte, error) {
	h, err := hex.DecodeString(a.EntryHash)
	if err != nil || len(h) != 32 {
		return nil, fmt.Errorf("anchor seq %d: bad entry_hash %q", a.Seq, a.EntryHash)
	}
	return h, nil
}

// LoadAnchors reads audit.chain_anchors in seq order; empty when nothing was pruned.
func LoadAnchors(ctx context.Context, q Querier) ([]Anchor, error) {
	rows, err := q.Query(ctx, `SELECT seq, entry_hash, first_seq, partitions, rows, archive, pruned_at, public_key, signature
	                             FROM audit.chain_anchors ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("read chain anchors: %w", err)
	}
	anchors, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Anchor, error) {
		var a Anchor
		var hash, pub, sig []byte
		var at time.Time
		err := r.Scan(&a.Seq, &hash, &a.FirstSeq, &a.Partitions, &a.Rows, &a.Archive, &at, &pub, &sig)
		a.Version = AnchorVersion
		a.EntryHash = hex.EncodeToString(hash)
		a.PrunedAt = at.UTC().Format(anchorTime)
		a.PublicKey = base64.StdEncoding.EncodeToString(pub)
		a.Signature = base64.StdEncoding.EncodeToString(sig)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read chain anchors: %w", err)
	}
	return anchors, nil
}

// ErrPrunedNoKey: the database was pruned, and where its chain now starts cannot be checked
// without the archive's public key.
var ErrPrunedNoKey = errors.New("the database was pruned (audit.chain_anchors): give the archive's --public-key, which checks where its chain now starts")

// ChainStart returns where the chain in the database starts when retention pruned its oldest
// entries: the seq and entry hash of the last pruned entry, as the newest anchor signs them,
// after checking every anchor's signature with pub (the archive's key) and that each continues
// the one before (an anchor removed is a gap in their ranges). seq is 0 when nothing was pruned.
func ChainStart(ctx context.Context, q Querier, pub ed25519.PublicKey) (seq int64, entryHash []byte, err error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('audit.chain_anchors') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, nil, fmt.Errorf("read chain anchors: %w", err)
	}
	if !exists {
		return 0, nil, nil
	}
	anchors, err := LoadAnchors(ctx, q)
	if err != nil || len(anchors) == 0 {
		return 0, nil, err
	}
	if pub == nil {
		return 0, nil, ErrPrunedNoKey
	}
	next := int64(1)
	for _, a := range anchors {
		if err := a.Verify(pub); err != nil {
			return 0, nil, err
		}
		if a.FirstSeq != next {
			return 0, nil, fmt.Errorf("chain anchor seq %d starts its range at seq %d, want %d: an anchor is missing", a.Seq, a.FirstSeq, next)
		}
		next = a.Seq + 1
	}
	last := anchors[len(anchors)-1]
	h, err := last.EntryHashBytes()
	if err != nil {
		return 0, nil, err
	}
	return last.Seq, h, nil
}
