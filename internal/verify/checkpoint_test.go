package verify_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// TestCheckpoint_Verify changes a signed checkpoint in every way that would let a run skip
// entries: each must fail with ErrBadCheckpoint, never be accepted.
func TestCheckpoint_Verify(t *testing.T) {
	pub, priv := archive.GenerateKey()
	otherPub, otherPriv := archive.GenerateKey()
	fresh := func() *verify.Checkpoint {
		cp := &verify.Checkpoint{Version: verify.CheckpointVersion, Scope: "db", Seq: 10,
			EntryHash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", VerifiedAt: time.Now()}
		cp.Sign(priv)
		return cp
	}
	if err := fresh().Verify(pub); err != nil {
		t.Fatalf("a checkpoint signed with the key: %v", err)
	}
	cases := map[string]func(cp *verify.Checkpoint) ed25519Pub{
		"SeqMovedForward":        func(cp *verify.Checkpoint) ed25519Pub { cp.Seq = 1000; return pub },
		"HashReplaced":           func(cp *verify.Checkpoint) ed25519Pub { cp.EntryHash = cp.EntryHash[2:] + "00"; return pub },
		"Unsigned":               func(cp *verify.Checkpoint) ed25519Pub { cp.Signature = ""; return pub },
		"SignedByAnotherKey":     func(cp *verify.Checkpoint) ed25519Pub { cp.Sign(otherPriv); return pub },
		"VerifiedWithAnotherKey": func(cp *verify.Checkpoint) ed25519Pub { return otherPub },
		"GarbageSignature":       func(cp *verify.Checkpoint) ed25519Pub { cp.Signature = "!!"; return pub },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			cp := fresh()
			key := change(cp)
			if err := cp.Verify(key); !errors.Is(err, verify.ErrBadCheckpoint) {
				t.Fatalf("err = %v, want ErrBadCheckpoint", err)
			}
		})
	}
	if err := fresh().Matches("archive", "s3://b/p"); !errors.Is(err, verify.ErrCheckpointMismatch) {
		t.Errorf("a db checkpoint used for an archive run: %v", err)
	}
}

type ed25519Pub = []byte

// TestCheckpoint_File writes and reads a checkpoint file: the same checkpoint comes back, its
// signature intact; a missing file is no checkpoint, a malformed one an error.
func TestCheckpoint_File(t *testing.T) {
	pub, priv := archive.GenerateKey()
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if cp, err := verify.ReadCheckpointFile(context.Background(), path); cp != nil || err != nil {
		t.Fatalf("missing file: %v %v", cp, err)
	}
	cp := &verify.Checkpoint{Version: verify.CheckpointVersion, Scope: "archive", Archive: "file:///x", Seq: 5,
		EntryHash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", DigestKey: "digests/x/0.json",
		DigestSignature: "c2ln", Files: 3}
	cp.Sign(priv)
	if err := verify.WriteCheckpointFile(path, cp); err != nil {
		t.Fatal(err)
	}
	got, err := verify.ReadCheckpointFile(context.Background(), path)
	if err != nil || *got != *cp || got.Verify(pub) != nil {
		t.Fatalf("read back %+v (%v), wrote %+v", got, err, cp)
	}
	if err := writeFile(path, `{"seq": 1, "extra": true}`); err != nil {
		t.Fatal(err)
	}
	if _, err := verify.ReadCheckpointFile(context.Background(), path); !errors.Is(err, verify.ErrBadCheckpoint) {
		t.Errorf("unknown field: %v", err)
	}
}

// TestRecord_RecentCheckpoints records runs as VERIFY events and reads the checkpoints back from
// the trail: the successful runs', newest first, for the same scope and archive, sealed or not.
func TestRecord_RecentCheckpoints(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.New(t)
	pub, priv := archive.GenerateKey()
	latest := func(scope, url string) (*verify.Checkpoint, error) {
		t.Helper()
		found, err := verify.RecentCheckpoints(ctx, db, scope, url, 50)
		if err != nil || len(found) == 0 {
			return nil, err
		}
		return found[0].Checkpoint, found[0].Err
	}
	if cp, err := latest("db", ""); cp != nil || err != nil {
		t.Fatalf("no run yet: %v %v", cp, err)
	}
	record := func(scope, url string, seq int64, intact bool) *verify.Checkpoint {
		rep := &verify.Report{Scope: scope, Entries: seq, FirstSeq: 1, LastSeq: seq, StartedAt: time.Now(), FinishedAt: time.Now()}
		if !intact {
			rep.Problems = []verify.Problem{{Seq: 3, Kind: verify.Modified, Detail: "x"}}
		}
		cp := &verify.Checkpoint{Version: verify.CheckpointVersion, Scope: scope, Archive: url, Seq: seq,
			EntryHash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}
		cp.Sign(priv)
		if _, err := verify.Record(ctx, db, verify.Run{Scope: scope, Archive: url, Report: rep, Checkpoint: cp, Host: "h", OSUser: "u"}); err != nil {
			t.Fatal(err)
		}
		return cp
	}
	record("db", "", 10, true)
	testdb.Seal(t, db)
	want := record("db", "", 20, true) // pending, newer than the sealed one
	record("db", "", 30, false)        // a failed run leaves no checkpoint
	record("all", "file:///a", 40, true)
	if found, err := verify.RecentCheckpoints(ctx, db, "db", "", 50); err != nil || len(found) != 2 || found[1].Seq == 0 || found[1].Checkpoint.Seq != 10 {
		t.Fatalf("db checkpoints: %+v, %v; want the pending one (20), then the sealed one (10)", found, err)
	}
	got, err := latest("db", "")
	if err != nil || got == nil || got.Seq != 20 || got.Verify(pub) != nil || *got != *want {
		t.Fatalf("latest db checkpoint = %+v, %v; want %+v", got, err, want)
	}
	testdb.Seal(t, db)
	if got, _ := latest("db", ""); got == nil || got.Seq != 20 {
		t.Fatalf("after sealing: %+v", got)
	}
	if got, _ := latest("all", "file:///b"); got != nil {
		t.Errorf("another archive's checkpoint was returned: %+v", got)
	}
	var n int
	var outcome, rid string
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE outcome = 'FAILURE'), max(outcome), max(resource_id)
		FROM audit.events WHERE action_type = 'VERIFY' AND details->>'os_user' = 'u'`).Scan(&n, &outcome, &rid); err != nil {
		t.Fatal(err)
	}
	if n != 1 || rid != "1-40" {
		t.Errorf("VERIFY events: %d failures, resource_id %q", n, rid)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
