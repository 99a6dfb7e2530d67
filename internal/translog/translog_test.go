package translog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/translog"
)

// memHashes is the whole tree's stored hashes in memory: the oracle the tiles are checked
// against, built by tlog alone.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m[x]
	}
	return out, nil
}

func entryHash(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	h := sha256.Sum256(b[:])
	return h[:]
}

// TestAppend_ProvesAgainstTlog: a log grown in batches of uneven sizes (one entry, across tile
// edges, several tiles at once) has, after each batch, the root tlog computes over all the
// leaves in memory; every entry's inclusion proof and the consistency proof from every earlier
// tree check with tlog; the tiles are where C2SP tlog-tiles puts them, in a real directory
// archive.
func TestAppend_ProvesAgainstTlog(t *testing.T) {
	ctx := context.Background()
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mem memHashes
	var tree tlog.Tree
	var trees []tlog.Tree
	next := 0
	for _, batch := range []int{1, 1, 6, 247, 1, 256, 300, 700, 3} {
		var leaves []tlog.Hash
		for range batch {
			leaf := translog.LeafHash(entryHash(next))
			hs, err := tlog.StoredHashesForRecordHash(int64(next), leaf, mem)
			if err != nil {
				t.Fatal(err)
			}
			mem = append(mem, hs...)
			leaves = append(leaves, leaf)
			next++
		}
		if tree, err = translog.Append(ctx, store, tree, leaves); err != nil {
			t.Fatalf("append %d: %v", batch, err)
		}
		want, err := tlog.TreeHash(int64(next), mem)
		if err != nil {
			t.Fatal(err)
		}
		if tree.N != int64(next) || tree.Hash != want {
			t.Fatalf("after %d entries: tree %d %v, want root %v", next, tree.N, tree.Hash, want)
		}
		trees = append(trees, tree)
	}
	for i := 0; i < next; i += 37 {
		p, err := translog.ProveInclusion(ctx, store, tree, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, tree.N, tree.Hash, int64(i), translog.LeafHash(entryHash(i))); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, tree.N, tree.Hash, int64(i), translog.LeafHash(entryHash(i+1))); err == nil {
			t.Errorf("entry %d: the proof checks for another entry too", i)
		}
	}
	for _, old := range trees {
		p, err := translog.ProveConsistency(ctx, store, tree, old.N)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash); err != nil {
			t.Errorf("tree of %d in %d: %v", old.N, tree.N, err)
		}
	}
	// 1515 entries: five full level-0 tiles, a partial sixth, and a partial level-1 tile.
	for _, key := range []string{"tile/0/000", "tile/0/004", "tile/0/005.p/235", "tile/1/000.p/5"} {
		if _, err := store.Get(ctx, key); err != nil {
			t.Errorf("tile %s: %v", key, err)
		}
	}
}

// TestAppend_AlteredTile: whoever writes the archive changes stored tiles (a leaf replaced).
// What must hold: a proof read through an altered tile is refused, and the log is not extended
// on an altered tile of its right edge (the tiles an append reads; the others it does not need).
func TestAppend_AlteredTile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []tlog.Hash
	for i := range 300 {
		leaves = append(leaves, translog.LeafHash(entryHash(i)))
	}
	tree, err := translog.Append(ctx, store, tlog.Tree{}, leaves)
	if err != nil {
		t.Fatal(err)
	}
	alter := func(key string) {
		path := filepath.Join(dir, filepath.FromSlash(key))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data[0] ^= 1
		os.Chmod(path, 0o644)
		if err := os.WriteFile(path, data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	alter("tile/0/000")
	if _, err := translog.ProveInclusion(ctx, store, tree, 5); err == nil {
		t.Error("a proof read through an altered tile was given")
	}
	if _, err := translog.ProveInclusion(ctx, store, tree, 260); err != nil {
		t.Errorf("a proof that reads no altered tile: %v", err)
	}
	alter("tile/0/001.p/44")
	if _, err := translog.Append(ctx, store, tree, []tlog.Hash{translog.LeafHash(entryHash(300))}); err == nil {
		t.Error("the log was extended on an altered tile")
	}
}

// TestCheckpoint_SignedNote: a checkpoint signed with an ed25519 key opens with the verifier key
// note itself derives from the public key; an altered text, another key and another origin are
// refused.
func TestCheckpoint_SignedNote(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, vkey, err := translog.NewSigner("pgtrail.example/db", key)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp := translog.Checkpoint{Origin: "pgtrail.example/db", Tree: tlog.Tree{N: 42, Hash: translog.LeafHash([]byte("x"))}}
	signed, err := translog.Sign(cp, signer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := translog.Open(signed, "pgtrail.example/db", note.VerifierList(verifier))
	if err != nil || got != cp {
		t.Fatalf("open: %+v, %v; want %+v", got, err, cp)
	}
	altered := []byte(strings.Replace(string(signed), "\n42\n", "\n43\n", 1))
	if _, err := translog.Open(altered, "", note.VerifierList(verifier)); err == nil {
		t.Error("an altered checkpoint opened")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	_, otherVkey, _ := translog.NewSigner("pgtrail.example/db", other)
	otherVerifier, _ := note.NewVerifier(otherVkey)
	if _, err := translog.Open(signed, "", note.VerifierList(otherVerifier)); err == nil {
		t.Error("a checkpoint opened with another key")
	}
	if _, err := translog.Open(signed, "pgtrail.example/other", note.VerifierList(verifier)); err == nil {
		t.Error("a checkpoint of another log opened")
	}
	for _, bad := range []string{"", "o\n-1\nAAAA\n", "o\n01\n" + strings.Repeat("A", 44) + "\n", "o\n1\nAAAA\n"} {
		if _, err := translog.ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}
