package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pgtrail/pgtrail/internal/fileinput"
)

// CheckpointVersion is the version of the checkpoint format this package writes.
const CheckpointVersion = 1

// Checkpoint is where an intact run ended, signed by the verifier, so that the next run can start
// there (Verifier.Since) and cost O(new entries). It lives in the trail itself, in the details of
// the VERIFY event that records the run (see Record and LatestCheckpoint), or in a file
// (ReadCheckpointFile, WriteCheckpointFile).
type Checkpoint struct {
	Version int `json:"version"`
	// Scope is the check the checkpoint is for: "db", "archive" or "all".
	Scope string `json:"scope"`
	// Archive is the archive URL (scopes archive and all): a checkpoint of one archive is
	// never used for another.
	Archive string `json:"archive,omitempty"`
	// Seq is the last entry verified, and EntryHash its hex entry_hash. For the archive (and
	// all) Seq is the last seq of the last complete batch verified.
	Seq       int64  `json:"seq"`
	EntryHash string `json:"entry_hash"`
	// DigestKey and DigestSignature name the last digest verified; Files counts the data files
	// of the batches up to Seq (archive and all).
	DigestKey       string `json:"digest_key,omitempty"`
	DigestSignature string `json:"digest_signature,omitempty"`
	Files           int64  `json:"files,omitempty"`
	// VerifiedAt is when the run that wrote the checkpoint started (UTC, whole seconds).
	VerifiedAt time.Time `json:"verified_at"`
	// Signature is the base64 Ed25519 signature of SigningBytes.
	Signature string `json:"signature"`
}

// Errors about checkpoints. Both mean "could not verify": an incremental run never silently
// falls back to something else.
var (
	// ErrBadCheckpoint: the checkpoint's signature does not verify, or it is malformed.
	ErrBadCheckpoint = errors.New("checkpoint signature does not verify")
	// ErrCheckpointMismatch: the checkpoint is for another scope or archive.
	ErrCheckpointMismatch = errors.New("checkpoint is for another check")
)

// SigningBytes returns what the signature covers: the checkpoint as compact JSON with Signature
// set to "", fields in the order of the struct.
func (c Checkpoint) SigningBytes() []byte {
	c.Signature = ""
	return c.compactJSON()
}

func (c Checkpoint) compactJSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		panic(fmt.Sprintf("verify: marshal checkpoint: %v", err)) // strings, integers, a time: cannot fail
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

// Sign stamps VerifiedAt when it is zero and signs the checkpoint with key.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	if c.VerifiedAt.IsZero() {
		c.VerifiedAt = time.Now()
	}
	c.VerifiedAt = c.VerifiedAt.UTC().Truncate(time.Second)
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SigningBytes()))
}

// Verify checks the signature against pub and that the checkpoint is one this package can start
// from; it returns an error wrapping ErrBadCheckpoint otherwise.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: public key is %d bytes", ErrBadCheckpoint, len(pub))
	case c.Signature == "":
		return fmt.Errorf("%w: it is not signed", ErrBadCheckpoint)
	case err != nil || len(sig) != ed25519.SignatureSize:
		return fmt.Errorf("%w: malformed signature", ErrBadCheckpoint)
	case !ed25519.Verify(pub, c.SigningBytes(), sig):
		return fmt.Errorf("%w (seq %d, %s): it was altered, or signed with another key", ErrBadCheckpoint, c.Seq, c.VerifiedAt.Format(time.RFC3339))
	case c.Version != CheckpointVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrBadCheckpoint, c.Version, CheckpointVersion)
	case c.Seq < 1:
		return fmt.Errorf("%w: seq %d", ErrBadCheckpoint, c.Seq)
	}
	if _, err := c.hash(); err != nil {
		return err
	}
	return nil
}

// Matches returns an error wrapping ErrCheckpointMismatch unless the checkpoint is for scope and
// archiveURL ("" for db).
func (c *Checkpoint) Matches(scope, archiveURL string) error {
	if c.Scope != scope || c.Archive != archiveURL {
		return fmt.Errorf("%w: it is for %s %s, this run is %s %s", ErrCheckpointMismatch, c.Scope, c.Archive, scope, archiveURL)
	}
	return nil
}

func (c *Checkpoint) hash() ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	b, err := hex.DecodeString(c.EntryHash)
	if err != nil || len(b) != sha256.Size {
		return h, fmt.Errorf("%w: entry_hash %q is not a hex SHA-256", ErrBadCheckpoint, c.EntryHash)
	}
	copy(h[:], b)
	return h, nil
}

// ParseCheckpoint decodes a checkpoint; unknown fields are errors, since a field the signature
// covers must not be dropped.
func ParseCheckpoint(data []byte) (*Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	return &c, nil
}

// MaxCheckpointFile bounds a checkpoint file (a checkpoint is a few hundred bytes): a path that
// is /dev/zero or a huge file is refused, not read.
const MaxCheckpointFile = 64 << 10

// ReadCheckpointFile reads a checkpoint file; it returns nil, nil when the file does not exist
// (the first run). The signature is not checked here. The read ends when ctx does.
func ReadCheckpointFile(ctx context.Context, path string) (*Checkpoint, error) {
	data, err := fileinput.ReadFile(ctx, path, MaxCheckpointFile, "a checkpoint file")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(data)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	return c, nil
}

// WriteCheckpointFile replaces path with c atomically (a temporary file renamed over it, both
// fsynced), so that a crash leaves the old checkpoint or the new one.
func WriteCheckpointFile(path string, c *Checkpoint) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(append(c.compactJSON(), '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write checkpoint: fsync %s: %w", dir, err)
	}
	return nil
}

// StoredCheckpoint is a checkpoint read from a VERIFY event: Err when it does not parse. Seq
// names the event (0 while it is still pending).
type StoredCheckpoint struct {
	*Checkpoint
	Err error
	Seq int64
}

// RecentCheckpoints returns the checkpoints of the latest n successful VERIFY events for scope and
// archiveURL ("" for db), newest first, sealed or still pending. Pending entries are ordered by
// capture time: their ids come from per-session caches. Signatures are not checked here: the
// caller takes the newest that verifies, and reports the others (since schema version 8 only
// pgtrail_auditor and pgtrail_owner members write VERIFY events; before, any role could).
func RecentCheckpoints(ctx context.Context, db Querier, scope, archiveURL string, n int) ([]StoredCheckpoint, error) {
	rows, err := db.Query(ctx, `
SELECT v.seq, v.details -> 'checkpoint' FROM (
    SELECT 1 AS pending, p.occurred_at, p.id AS ord, 0::bigint AS seq, p.details FROM audit.pending p
     WHERE p.action_type = $1 AND p.outcome = 'SUCCESS'
    UNION ALL
    SELECT 0, e.occurred_at, e.seq, e.seq, e.details FROM audit.events e
     WHERE e.action_type = $1 AND e.outcome = 'SUCCESS') v
 WHERE v.details -> 'checkpoint' ->> 'scope' = $2
   AND COALESCE(v.details -> 'checkpoint' ->> 'archive', '') = $3
 ORDER BY v.pending DESC, v.occurred_at DESC, v.ord DESC LIMIT $4`, ActionVerify, scope, archiveURL, n)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		var sc StoredCheckpoint
		var raw []byte
		if err := rows.Scan(&sc.Seq, &raw); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		sc.Checkpoint, sc.Err = ParseCheckpoint(raw)
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}
