// Package translog keeps the trail as a transparency log: an RFC 6962 Merkle tree whose leaves
// are the chain's entries in seq order, stored as tiles in the C2SP tlog-tiles layout, with
// checkpoints in the C2SP signed-note format, and inclusion and consistency proofs read from the
// tiles. The hash chain stays what audit.canonical and the in-database checks use; the tree is
// what lets anyone prove one entry, or that the log only grew, without reading the whole trail.
//
// The tree and its proofs are golang.org/x/mod/sumdb/tlog's (the Go checksum database's), not
// written here; this package stores its tiles and names them.
package translog

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of every tile: 256 hashes wide, as C2SP tlog-tiles fixes it.
const TileHeight = 8

// Store holds the log's tiles: the archive. Objects are immutable; a Put of a key that exists
// keeps what is there (the tiles of a tree are the same bytes however often they are written).
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, data []byte) error
}

// LeafHash is the tree's leaf for an entry: the record hash (RFC 6962: SHA-256 of 0x00 and the
// data) of its entry_hash, which binds the entry's content and its place in the chain.
func LeafHash(entryHash []byte) tlog.Hash { return tlog.RecordHash(entryHash) }

// TilePath is where tile t is stored: C2SP tlog-tiles' tile/<L>/<N>[.p/<W>], with N in groups
// of three digits (x001/x234/067). tlog names the same tile with its height in front
// (tile/8/…), the Go checksum database's layout.
func TilePath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/"+strconv.Itoa(TileHeight)+"/")
}

// Append adds leaves (LeafHash of the entries after tree, in seq order) to the log whose tree is
// tree, writes the tiles the new tree adds or widens, and returns the new tree. The tiles of
// tree are read back and checked against its hash first: a log whose tiles were altered is not
// extended.
func Append(ctx context.Context, store Store, tree tlog.Tree, leaves []tlog.Hash) (tlog.Tree, error) {
	if len(leaves) == 0 {
		return tree, nil
	}
	r := &appendReader{old: tlog.TileHashReader(tree, &tileReader{ctx: ctx, store: store}),
		oldCount: tlog.StoredHashCount(tree.N), added: map[int64]tlog.Hash{}}
	for i, leaf := range leaves {
		n := tree.N + int64(i)
		hashes, err := tlog.StoredHashesForRecordHash(n, leaf, r)
		if err != nil {
			return tree, fmt.Errorf("tree: hash entry %d: %w", n+1, err)
		}
		at := tlog.StoredHashIndex(0, n)
		for k, h := range hashes {
			r.added[at+int64(k)] = h
		}
	}
	next := tlog.Tree{N: tree.N + int64(len(leaves))}
	var err error
	if next.Hash, err = tlog.TreeHash(next.N, r); err != nil {
		return tree, fmt.Errorf("tree: root of %d entries: %w", next.N, err)
	}
	for _, t := range tlog.NewTiles(TileHeight, tree.N, next.N) {
		data, err := tlog.ReadTileData(t, r)
		if err != nil {
			return tree, fmt.Errorf("tree: tile %s: %w", TilePath(t), err)
		}
		if err := store.Put(ctx, TilePath(t), data); err != nil {
			return tree, fmt.Errorf("tree: store tile %s: %w", TilePath(t), err)
		}
	}
	return next, nil
}

// ProveInclusion returns the proof that the entry at index (seq-1) is in tree, read from the
// tiles (checked against the tree's hash as they are read). tlog.CheckRecord checks it.
func ProveInclusion(ctx context.Context, store Store, tree tlog.Tree, index int64) (tlog.RecordProof, error) {
	p, err := tlog.ProveRecord(tree.N, index, tlog.TileHashReader(tree, &tileReader{ctx: ctx, store: store}))
	if err != nil {
		return nil, fmt.Errorf("tree: prove entry %d in %d: %w", index+1, tree.N, err)
	}
	return p, nil
}

// ProveConsistency returns the proof that the tree of the first oldSize entries is a prefix of
// tree: the log only grew. tlog.CheckTree checks it.
func ProveConsistency(ctx context.Context, store Store, tree tlog.Tree, oldSize int64) (tlog.TreeProof, error) {
	p, err := tlog.ProveTree(tree.N, oldSize, tlog.TileHashReader(tree, &tileReader{ctx: ctx, store: store}))
	if err != nil {
		return nil, fmt.Errorf("tree: prove %d entries consistent with %d: %w", oldSize, tree.N, err)
	}
	return p, nil
}

// appendReader serves the hashes Append needs: those of the old tree from its tiles, the new
// ones from memory.
type appendReader struct {
	old      tlog.HashReader
	oldCount int64 // stored hashes of the old tree: indexes below it are the tiles'
	added    map[int64]tlog.Hash
}

func (r *appendReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var oldIdx []int64
	var oldAt []int
	for i, x := range indexes {
		if h, ok := r.added[x]; ok {
			out[i] = h
			continue
		}
		if x >= r.oldCount {
			return nil, fmt.Errorf("hash %d is neither in the tree nor added", x)
		}
		oldIdx, oldAt = append(oldIdx, x), append(oldAt, i)
	}
	if len(oldIdx) > 0 {
		hs, err := r.old.ReadHashes(oldIdx)
		if err != nil {
			return nil, err
		}
		for k, h := range hs {
			out[oldAt[k]] = h
		}
	}
	return out, nil
}

// tileReader reads tiles from the store; tlog checks them against the tree before use.
type tileReader struct {
	ctx   context.Context
	store Store
}

func (r *tileReader) Height() int { return TileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.store.Get(r.ctx, TilePath(t))
		if err != nil {
			return nil, fmt.Errorf("read tile %s: %w", TilePath(t), err)
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s holds %d bytes, want %d", TilePath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// Checkpoint is a tree as C2SP's checkpoint format states it: the log's origin (its name), its
// size and its root hash.
type Checkpoint struct {
	Origin string
	tlog.Tree
}

// Text is the checkpoint's note text: origin, size and base64 root hash, one per line.
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.N, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// ParseCheckpoint reads a checkpoint's note text. Extension lines after the root hash are
// allowed by the format and ignored.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, errors.New("checkpoint: want origin, size and root hash lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	c := Checkpoint{Origin: lines[0], Tree: tlog.Tree{N: n}}
	copy(c.Hash[:], h)
	return c, nil
}

// Sign returns the checkpoint as a signed note.
func Sign(c Checkpoint, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// Open checks a signed checkpoint's signatures with verifiers (at least one must be theirs) and
// returns it; origin, when not "", must be the log's.
func Open(signed []byte, origin string, verifiers note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(signed, verifiers)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if origin != "" && c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("open checkpoint: it is of log %q, not %q", c.Origin, origin)
	}
	return c, nil
}

// NewSigner returns a note signer named name for an ed25519 key (the key note.GenerateKey would
// have drawn), and the verifier key that checks its signatures.
func NewSigner(name string, key ed25519.PrivateKey) (note.Signer, string, error) {
	pub := append([]byte{1}, key.Public().(ed25519.PublicKey)...) // 1: note's ed25519 algorithm
	h := sha256.Sum256(append([]byte(name+"\n"), pub...))
	hash := binary.BigEndian.Uint32(h[:4])
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint signer %q: %w", name, err)
	}
	vkey, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", err
	}
	return signer, vkey, nil
}
