package verify_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
	"github.com/pgtrail/pgtrail/internal/testenv"
	"github.com/pgtrail/pgtrail/internal/verify"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
)

// archived is a synthetic trail archived in a file sink, as the stream daemon writes it: batches
// of batch entries, each split into files by tenant and day, one signed digest per file.
type archived struct {
	sink   archive.Sink
	root   string
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	events []pgtrail.Event
	batch  int
}

// entrySize is the canonical size of test entries: small, the tests are about detection.
const entrySize = 300

func newArchived(t *testing.T, n, batch int) *archived {
	t.Helper()
	root := t.TempDir()
	sink, err := archive.Open(context.Background(), "file://"+root, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv := archive.GenerateKey()
	a := &archived{sink: sink, root: root, pub: pub, priv: priv, batch: batch}
	a.extend(t, n)
	return a
}

// extend archives the trail's next entries up to n in all.
func (a *archived) extend(t *testing.T, n int) {
	t.Helper()
	events := verifytest.Events(n, entrySize)
	if err := verifytest.WriteArchive(context.Background(), a.sink, a.priv, events[len(a.events):], a.batch); err != nil {
		t.Fatal(err)
	}
	a.events = events
}

// batchOf returns the batch range holding seq.
func (a *archived) batchOf(seq int64) (int64, int64) {
	first := (seq-1)/int64(a.batch)*int64(a.batch) + 1
	return first, min(first+int64(a.batch)-1, int64(len(a.events)))
}

// fileOf returns the key of the data file holding seq.
func (a *archived) fileOf(seq int64) string {
	e := a.events[seq-1]
	first, last := a.batchOf(seq)
	return archive.DataKey(e.TenantID, e.OccurredAt, first, last)
}

func (a *archived) digestKey(seq int64, n int) string {
	first, last := a.batchOf(seq)
	return archive.DigestKey(first, last, n)
}

// write replaces an archived object behind the sink's back: its files are read-only, so as an
// intruder would, it makes the file writable first.
func (a *archived) write(t *testing.T, key string, data []byte) {
	t.Helper()
	path := filepath.Join(a.root, filepath.FromSlash(key))
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, data, 0o444); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o444)
}

// rewrite decodes a data file, lets fn change its events and writes it back.
func (a *archived) rewrite(t *testing.T, key string, fn func([]pgtrail.Event) []pgtrail.Event) {
	t.Helper()
	data, err := a.sink.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	events, err := archive.DecodeParquet(data)
	if err != nil {
		t.Fatal(err)
	}
	if data, err = archive.EncodeParquet(fn(events)); err != nil {
		t.Fatal(err)
	}
	a.write(t, key, data)
}

func (a *archived) remove(t *testing.T, key string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(a.root, filepath.FromSlash(key))); err != nil {
		t.Fatal(err)
	}
}

// resign replaces a digest's signature with one made by key.
func (a *archived) resign(t *testing.T, digestKey string, key ed25519.PrivateKey, change func(*archive.Digest)) {
	t.Helper()
	data, err := a.sink.Get(context.Background(), digestKey)
	if err != nil {
		t.Fatal(err)
	}
	d, err := archive.ParseDigest(data)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(&d)
	}
	if key != nil {
		d.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, d.SigningBytes()))
	}
	a.write(t, digestKey, d.Marshal())
}

func bySeq(seq int64) func(e *pgtrail.Event) bool {
	return func(e *pgtrail.Event) bool { return e.Seq == seq }
}

// rechain recomputes prev_hash and entry_hash of events[from:], continuing from events[from-1].
func rechain(events []pgtrail.Event, from int) {
	for i := from; i < len(events); i++ {
		e := &events[i]
		e.PrevHash = pgtrail.GenesisHash
		if i > 0 {
			e.PrevHash = events[i-1].EntryHash
		}
		sum, _ := e.Hash(nil)
		e.EntryHash = sum[:]
	}
}

// want is a problem a tampering must produce: its kind, and its seq and key when not zero.
type want struct {
	kind verify.Kind
	seq  int64
	key  string
}

// checkFound fails unless every wanted problem is in rep.
func checkFound(t *testing.T, rep *verify.Report, wants ...want) {
	t.Helper()
	if rep.Intact() {
		t.Fatalf("went undetected: %+v", rep)
	}
	for _, w := range wants {
		if !slices.ContainsFunc(rep.Problems, func(p verify.Problem) bool {
			return p.Kind == w.kind && (w.seq == 0 || p.Seq == w.seq) && (w.key == "" || p.Key == w.key)
		}) {
			t.Errorf("no %s problem at seq %d %s; problems: %s", w.kind, w.seq, w.key, describe(rep.Problems))
		}
	}
}

func describe(ps []verify.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %s seq %d %s: %s [%s]", p.Source, p.Seq, p.Kind, p.Detail, p.Key)
	}
	return b.String()
}

func TestArchive_Clean(t *testing.T) {
	for _, n := range []int{0, 1, 1234} {
		t.Run(fmt.Sprintf("Entries%d", n), func(t *testing.T) {
			a := newArchived(t, n, 100)
			rep, err := verify.Archive(context.Background(), a.sink, a.pub)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Intact() || rep.Entries != int64(n) || rep.Files != rep.Digests || rep.InProgress != "" {
				t.Fatalf("clean archive of %d entries: %+v%s", n, rep, describe(rep.Problems))
			}
			if n > 0 && (rep.Checkpoint == nil || rep.Checkpoint.Seq != int64(n)) {
				t.Errorf("checkpoint = %+v, want one at seq %d", rep.Checkpoint, n)
			}
		})
	}
}

// TestArchive_ProblemNamesFile checks that a damaged entry is reported with the data file it
// is in. Tried: one field changed in each of two entries of one batch that sit in different
// files (the batch is split by tenant), neither the first of its file (whose digest check names
// the file too). Must hold: each entry's own problem names its own file.
func TestArchive_ProblemNamesFile(t *testing.T) {
	a := newArchived(t, 40, 10)
	seqs := []int64{15, 16}
	if a.fileOf(15) == a.fileOf(16) {
		t.Fatalf("seq 15 and 16 share %s: the test needs two files of one batch", a.fileOf(15))
	}
	for _, seq := range seqs {
		a.rewrite(t, a.fileOf(seq), func(evs []pgtrail.Event) []pgtrail.Event {
			i := slices.IndexFunc(evs, bySeqValue(seq))
			if i == 0 {
				t.Fatalf("seq %d is the first of its file", seq)
			}
			evs[i].ActorID = "mallory"
			return evs
		})
	}
	rep, err := verify.Archive(context.Background(), a.sink, a.pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		if !slices.ContainsFunc(rep.Problems, func(p verify.Problem) bool {
			return p.Seq == seq && p.Kind == verify.Modified && p.Key == a.fileOf(seq) && strings.Contains(p.Detail, "content")
		}) {
			t.Errorf("no problem with the content of seq %d naming %s; problems: %s", seq, a.fileOf(seq), describe(rep.Problems))
		}
	}
}

func bySeqValue(seq int64) func(e pgtrail.Event) bool {
	return func(e pgtrail.Event) bool { return e.Seq == seq }
}

// TestArchive_Tampering changes a clean archive of 40 entries (4 batches of 10, each split into 4
// files by tenant) the way an intruder with write access to the storage could; each change must
// be reported with the right kind (and seq or object where it is known).
func TestArchive_Tampering(t *testing.T) {
	other, otherPriv := archive.GenerateKey()
	_ = other
	cases := []struct {
		name   string
		tamper func(t *testing.T, a *archived)
		wants  []want
	}{
		{
			// Tried: one field of one row changed inside a Parquet file. Detected: the entry no
			// longer matches its hash, and the file no longer matches its digest.
			name: "ModifiedField",
			tamper: func(t *testing.T, a *archived) {
				a.rewrite(t, a.fileOf(13), func(evs []pgtrail.Event) []pgtrail.Event {
					evs[slices.IndexFunc(evs, func(e pgtrail.Event) bool { return e.Seq == 13 })].ActorID = "mallory"
					return evs
				})
			},
			wants: []want{{verify.Modified, 13, ""}},
		},
		{
			// Tried: one row removed from its file. Detected: a gap at its seq, and the file no
			// longer matches its digest.
			name: "DeletedRow",
			tamper: func(t *testing.T, a *archived) {
				a.rewrite(t, a.fileOf(13), func(evs []pgtrail.Event) []pgtrail.Event {
					return slices.DeleteFunc(evs, func(e pgtrail.Event) bool { return e.Seq == 13 })
				})
			},
			wants: []want{{verify.Deleted, 13, ""}, {verify.Modified, 0, ""}},
		},
		{
			// Tried: a forged row inserted after seq 33 with the chain recomputed from there to the
			// end, the files of the last batch rewritten consistently. Detected by the digests:
			// the files' SHA-256 no longer match, and the last seq falls outside the batch.
			name: "ForgedRowRecomputedChain",
			tamper: func(t *testing.T, a *archived) {
				evs := slices.Clone(a.events[30:])
				forged := evs[2]
				forged.ActorID, forged.EventID = "mallory", "00000000-0000-4000-8000-00000000f00d"
				evs = slices.Insert(evs, 3, forged)
				for i := 3; i < len(evs); i++ {
					evs[i].Seq = int64(31 + i)
				}
				all := append(slices.Clone(a.events[:30]), evs...)
				rechain(all, 33)
				files := map[string][]pgtrail.Event{}
				for _, e := range all[30:] {
					k := archive.DataKey(e.TenantID, e.OccurredAt, 31, 40)
					files[k] = append(files[k], e)
				}
				for k, evs := range files {
					data, err := archive.EncodeParquet(evs)
					if err != nil {
						t.Fatal(err)
					}
					a.write(t, k, data)
				}
			},
			wants: []want{{verify.Modified, 0, ""}, {verify.Inserted, 41, ""}},
		},
		{
			// Tried: two rows of one file swap places in the chain (their seq exchanged). Detected:
			// the entry at seq 13 hashes correctly only at seq 17: reordered.
			name: "SwappedRows",
			tamper: func(t *testing.T, a *archived) {
				a.rewrite(t, a.fileOf(13), func(evs []pgtrail.Event) []pgtrail.Event {
					i := slices.IndexFunc(evs, func(e pgtrail.Event) bool { return e.Seq == 13 })
					j := slices.IndexFunc(evs, func(e pgtrail.Event) bool { return e.Seq == 17 })
					evs[i].Seq, evs[j].Seq = 17, 13
					evs[i], evs[j] = evs[j], evs[i]
					return evs
				})
			},
			wants: []want{{verify.Reordered, 13, ""}},
		},
		{
			// Tried: the tail cut: the last data file of the last batch removed. Detected: its
			// digest names a file that is gone.
			name: "TailTruncated",
			tamper: func(t *testing.T, a *archived) {
				a.remove(t, a.fileOf(40))
			},
			wants: []want{{verify.Deleted, 0, ""}},
		},
		{
			// Tried: a Hive partition dropped: every file of tenant globex, all days. Detected: the
			// digests name files that are gone, and the chain has gaps.
			name: "PartitionDropped",
			tamper: func(t *testing.T, a *archived) {
				a.remove(t, "events/tenant=globex")
			},
			wants: []want{{verify.Deleted, 2, ""}},
		},
		{
			// Tried: one digest removed. Detected: its file has no digest, and the next digest
			// chains to one that is gone.
			name: "DigestRemoved",
			tamper: func(t *testing.T, a *archived) {
				a.remove(t, a.digestKey(15, 1))
			},
			wants: []want{{verify.Deleted, 0, a0(t).digestKey(15, 2)}, {verify.Inserted, 0, ""}},
		},
		{
			// Tried: two consecutive digests removed, across a batch boundary (the last of batch
			// 11-20 and the first of 21-30). Detected: both batches lack a digest, and the chain
			// of digests breaks.
			name: "TwoConsecutiveDigestsRemoved",
			tamper: func(t *testing.T, a *archived) {
				a.remove(t, a.digestKey(15, 3))
				a.remove(t, a.digestKey(25, 0))
			},
			wants: []want{{verify.Deleted, 0, a0(t).digestKey(25, 1)}, {verify.Deleted, 11, ""}, {verify.Deleted, 21, ""}},
		},
		{
			// Tried: a digest re-signed with another key. Detected: its signature does not
			// verify: forged.
			name: "DigestSignedWithAnotherKey",
			tamper: func(t *testing.T, a *archived) {
				a.resign(t, a.digestKey(15, 0), otherPriv, nil)
			},
			wants: []want{{verify.Forged, 0, a0(t).digestKey(15, 0)}},
		},
		{
			// Tried: a data file modified and its digest's file_sha256 updated to match, the
			// signature left as it was. Detected: the digest's signature no longer verifies.
			name: "DigestAlteredToMatchFile",
			tamper: func(t *testing.T, a *archived) {
				a.resign(t, a.digestKey(15, 0), nil, func(d *archive.Digest) { d.FileSHA256 = strings.Repeat("0", 64) })
			},
			wants: []want{{verify.Forged, 0, a0(t).digestKey(15, 0)}},
		},
		{
			// Tried: a data file overwritten with garbage, and another cut in half. Detected: both
			// unreadable and unlike their digests, without the verifier failing.
			name: "GarbledFiles",
			tamper: func(t *testing.T, a *archived) {
				a.write(t, a.fileOf(13), []byte("PAR1 this is not parquet PAR1"))
				data, err := a.sink.Get(context.Background(), a.fileOf(25))
				if err != nil {
					t.Fatal(err)
				}
				a.write(t, a.fileOf(25), data[:len(data)/2])
			},
			wants: []want{{verify.Modified, 0, a0(t).fileOf(13)}, {verify.Modified, 0, a0(t).fileOf(25)}, {verify.Deleted, 13, ""}},
		},
		{
			// Tried: an extra object slipped into the events tree. Detected: inserted.
			name: "UnexpectedObject",
			tamper: func(t *testing.T, a *archived) {
				a.write(t, "events/tenant=acme/notes.txt", []byte("x"))
			},
			wants: []want{{verify.Inserted, 0, "events/tenant=acme/notes.txt"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newArchived(t, 40, 10)
			c.tamper(t, a)
			rep, err := verify.Archive(context.Background(), a.sink, a.pub)
			if err != nil {
				t.Fatal(err)
			}
			checkFound(t, rep, c.wants...)
		})
	}
}

// a0 gives the key helpers of the standard 40-entry archive without building it.
func a0(t *testing.T) *archived {
	return &archived{events: verifytest.Events(40, entrySize), batch: 10}
}

// TestArchive_WrongKey verifies with keys that did not sign the archive: the archive cannot be
// verified (ErrWrongKey, exit 2), and is never reported intact.
func TestArchive_WrongKey(t *testing.T) {
	a := newArchived(t, 40, 10)
	other, _ := archive.GenerateKey()
	if _, err := verify.Archive(context.Background(), a.sink, other); !errors.Is(err, verify.ErrWrongKey) {
		t.Errorf("another public key: err = %v, want ErrWrongKey", err)
	}
	if _, err := verify.Archive(context.Background(), a.sink, a.pub[:16]); err == nil {
		t.Error("a truncated public key was accepted")
	}

	// An archive written without a key has no signature to check: say so, rather than blame the
	// public key.
	unsigned := newArchived(t, 0, 10)
	unsigned.priv = nil
	unsigned.extend(t, 20)
	if _, err := verify.Archive(context.Background(), unsigned.sink, a.pub); !errors.Is(err, verify.ErrUnsignedArchive) || errors.Is(err, verify.ErrWrongKey) {
		t.Errorf("unsigned archive: err = %v, want ErrUnsignedArchive", err)
	}
}

// TestArchive_InProgress: the last batch without its digests is what the stream daemon leaves
// for a moment while it writes a batch: not a problem while it is young, and named. It is also
// what a writer of the archive leaves when it adds a data file no signed digest covers, or edits
// the newest batch and deletes its digest. What must survive: the finding, once the batch is
// older than the archive lag, or at once when its entries do not continue the verified chain.
func TestArchive_InProgress(t *testing.T) {
	young := func() time.Time { return verifytest.Start.Add(80 * time.Second) } // the 40th entry is 78 s in
	stale := func() time.Time { return verifytest.Start.Add(24 * time.Hour) }
	cases := []struct {
		name   string
		now    func() time.Time
		change func(t *testing.T, a *archived)
		kind   verify.Kind // "" for intact
		detail string
	}{
		{"BeingWritten", young, func(t *testing.T, a *archived) {}, "", ""},
		{"NeverSigned", stale, func(t *testing.T, a *archived) {}, verify.Unsigned, "no signed digest covers"},
		{"EditedDigestDeleted", young, func(t *testing.T, a *archived) {
			a.rewrite(t, a.fileOf(35), func(events []pgtrail.Event) []pgtrail.Event {
				for i := range events {
					if events[i].Seq == 35 {
						events[i].ActorID = "someone-else"
					}
				}
				return events
			})
		}, verify.Modified, "does not match its entry_hash"},
		{"PastTheEnd", young, func(t *testing.T, a *archived) {
			data, err := a.sink.Get(context.Background(), a.fileOf(40))
			if err != nil {
				t.Fatal(err)
			}
			e := a.events[39]
			if err := a.sink.Put(context.Background(), archive.DataKey(e.TenantID, e.OccurredAt, 5000, 5000), data); err != nil {
				t.Fatal(err)
			}
		}, verify.Inserted, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newArchived(t, 40, 10)
			if c.name != "PastTheEnd" {
				a.remove(t, "digests/"+strings.TrimSuffix(filepath.Base(a.fileOf(40)), ".parquet"))
			}
			c.change(t, a)
			v := &verify.Verifier{}
			v.SetClock(c.now)
			rep, err := v.Archive(context.Background(), a.sink, a.pub)
			if err != nil {
				t.Fatal(err)
			}
			if c.kind == "" {
				if !rep.Intact() || rep.InProgress != "31-40" || rep.Entries != 30 || rep.Checkpoint.Seq != 30 {
					t.Fatalf("archive with a batch being written: %+v%s", rep, describe(rep.Problems))
				}
				return
			}
			found := false
			for _, p := range rep.Problems {
				found = found || p.Kind == c.kind && strings.Contains(p.Detail, c.detail)
			}
			if rep.Intact() || !found {
				t.Fatalf("want a %s problem saying %q; got %+v%s", c.kind, c.detail, rep, describe(rep.Problems))
			}
		})
	}
}

// TestVerifier_ArchiveSince runs incrementally from a checkpoint: only the new batches are read,
// the result agrees with a full run, and what an incremental run relies on (the checkpointed
// digest, the batches up to it) must still be there.
func TestVerifier_ArchiveSince(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*archived, *verify.Checkpoint) {
		a := newArchived(t, 40, 10)
		rep, err := verify.Archive(ctx, a.sink, a.pub)
		if err != nil || !rep.Intact() {
			t.Fatalf("full run: %v %+v", err, rep)
		}
		a.extend(t, 70)
		return a, rep.Checkpoint
	}

	t.Run("AgreesWithFullRun", func(t *testing.T) {
		a, cp := setup(t)
		inc, err := (&verify.Verifier{Since: cp}).Archive(ctx, a.sink, a.pub)
		if err != nil {
			t.Fatal(err)
		}
		full, err := verify.Archive(ctx, a.sink, a.pub)
		if err != nil {
			t.Fatal(err)
		}
		if !inc.Intact() || inc.Entries != 30 || inc.FirstSeq != 41 || inc.LastSeq != 70 {
			t.Fatalf("incremental run: %+v%s", inc, describe(inc.Problems))
		}
		if !full.Intact() || *full.Checkpoint != *inc.Checkpoint {
			t.Fatalf("full run ends at %+v, incremental at %+v", full.Checkpoint, inc.Checkpoint)
		}
	})

	cases := []struct {
		name   string
		tamper func(t *testing.T, a *archived, cp *verify.Checkpoint)
		wants  []want
	}{
		{
			// Tried: every batch after the checkpoint removed, and the one it ends. Detected:
			// the archive ends before the checkpoint.
			name: "TailTruncated",
			tamper: func(t *testing.T, a *archived, cp *verify.Checkpoint) {
				for _, seq := range []int64{31, 41, 51, 61} {
					first, last := a.batchOf(seq)
					name := fmt.Sprintf("%020d-%020d", first, last)
					a.remove(t, "digests/"+name)
					keys, _ := a.sink.List(ctx, "events/")
					for _, k := range keys {
						if strings.HasSuffix(k, name+".parquet") {
							a.remove(t, k)
						}
					}
				}
			},
			wants: []want{{verify.Deleted, 31, ""}},
		},
		{
			// Tried: the checkpointed digest re-signed with another key. Detected: it changed.
			name: "CheckpointedDigestReplaced",
			tamper: func(t *testing.T, a *archived, cp *verify.Checkpoint) {
				_, other := archive.GenerateKey()
				a.resign(t, cp.DigestKey, other, nil)
			},
			wants: []want{{verify.Modified, 40, ""}},
		},
		{
			// Tried: a data file before the checkpoint removed. Detected: the batches up to the
			// checkpoint hold fewer files than they did.
			name: "OldFileRemoved",
			tamper: func(t *testing.T, a *archived, cp *verify.Checkpoint) {
				a.remove(t, a.fileOf(5))
			},
			wants: []want{{verify.Deleted, 40, ""}},
		},
		{
			// Tried: a row after the checkpoint changed. Detected as in a full run.
			name: "NewRowModified",
			tamper: func(t *testing.T, a *archived, cp *verify.Checkpoint) {
				a.rewrite(t, a.fileOf(55), func(evs []pgtrail.Event) []pgtrail.Event {
					evs[slices.IndexFunc(evs, func(e pgtrail.Event) bool { return e.Seq == 55 })].ActorID = "mallory"
					return evs
				})
			},
			wants: []want{{verify.Modified, 55, ""}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, cp := setup(t)
			c.tamper(t, a, cp)
			rep, err := (&verify.Verifier{Since: cp}).Archive(ctx, a.sink, a.pub)
			if err != nil {
				t.Fatal(err)
			}
			checkFound(t, rep, c.wants...)
		})
	}

	// What an incremental run does not read, it cannot see: a row changed inside a file before
	// the checkpoint (its file count unchanged) is found by the next full run.
	t.Run("OldRowModifiedNeedsFullRun", func(t *testing.T) {
		a, cp := setup(t)
		a.rewrite(t, a.fileOf(5), func(evs []pgtrail.Event) []pgtrail.Event {
			evs[0].ActorID = "mallory"
			return evs
		})
		inc, err := (&verify.Verifier{Since: cp}).Archive(ctx, a.sink, a.pub)
		if err != nil || !inc.Intact() {
			t.Fatalf("incremental run: %v%s", err, describe(inc.Problems))
		}
		full, err := verify.Archive(ctx, a.sink, a.pub)
		if err != nil {
			t.Fatal(err)
		}
		checkFound(t, full, want{verify.Modified, 0, a.fileOf(5)})
	})
}

// TestArchive_S3 verifies an archive in an S3 bucket with Object Lock: intact as written; then
// an intruder with write access puts a new version of a data file (Object Lock keeps the old
// version, but readers get the new one) and one of a digest, re-signed with another key: both
// must be found.
func TestArchive_S3(t *testing.T) {
	ctx := context.Background()
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	sink, err := archive.Open(ctx, "s3://"+bucket+"/trail", archive.Options{Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retention: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := &archived{sink: sink, batch: 25}
	a.pub, a.priv = archive.GenerateKey()
	a.extend(t, 100)
	rep, err := verify.Archive(ctx, sink, a.pub)
	if err != nil || !rep.Intact() || rep.Entries != 100 {
		t.Fatalf("clean S3 archive: %v %+v", err, rep)
	}

	s3s := sink.(*s3sink.Sink)
	put := func(key string, data []byte) {
		if _, err := s3s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s3s.Bucket()),
			Key: aws.String(s3s.ObjectKey(key)), Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("put a new version of %s: %v", key, err)
		}
	}
	data, err := sink.Get(ctx, a.fileOf(60))
	if err != nil {
		t.Fatal(err)
	}
	events, err := archive.DecodeParquet(data)
	if err != nil {
		t.Fatal(err)
	}
	events[0].Details = nil
	events[0].ActorID = "mallory"
	if data, err = archive.EncodeParquet(events); err != nil {
		t.Fatal(err)
	}
	put(a.fileOf(60), data)
	digest, err := sink.Get(ctx, a.digestKey(90, 0))
	if err != nil {
		t.Fatal(err)
	}
	d, err := archive.ParseDigest(digest)
	if err != nil {
		t.Fatal(err)
	}
	_, other := archive.GenerateKey()
	d.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(other, d.SigningBytes()))
	put(a.digestKey(90, 0), d.Marshal())

	rep, err = verify.Archive(ctx, sink, a.pub)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, rep, want{verify.Modified, events[0].Seq, ""}, want{verify.Modified, 0, a.fileOf(60)},
		want{verify.Forged, 0, a.digestKey(90, 0)})
}

// outageSink stops the S3 server once it has served a few reads: an outage in the middle of a
// verification.
type outageSink struct {
	archive.Sink
	reads, after int
	stop         func()
	mu           sync.Mutex
}

func (o *outageSink) Get(ctx context.Context, key string) ([]byte, error) {
	o.mu.Lock()
	if o.reads++; o.reads == o.after {
		o.stop()
	}
	o.mu.Unlock()
	return o.Sink.Get(ctx, key)
}

// TestArchive_S3Outage: tried: the S3 server goes away after the first objects of a 20-batch
// archive were read, while fetchers and workers are mid-run. Must hold: the verification ends
// (no hang) with an error, "could not verify", not with a report that calls the archive intact
// or damaged.
func TestArchive_S3Outage(t *testing.T) {
	ctx := context.Background()
	srv, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client, err := srv.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("outage")}); err != nil {
		t.Fatal(err)
	}
	sink, err := archive.Open(ctx, "s3://outage/trail", archive.Options{Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	a := &archived{sink: sink, batch: 10}
	a.pub, a.priv = archive.GenerateKey()
	a.extend(t, 200)
	o := &outageSink{Sink: sink, after: 5, stop: func() { srv.Stop(t) }}
	done := make(chan struct{})
	var rep *verify.Report
	go func() {
		defer close(done)
		rep, err = verify.Archive(ctx, o, a.pub)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("verification hangs after the S3 server went away")
	}
	if err == nil {
		t.Fatalf("verification during an outage returned a report (intact %v), not an error: %+v", rep.Intact(), rep)
	}
	t.Logf("error, as it should: %v", err)
}

// slowSink adds a delay to every read: a remote archive far away.
type slowSink struct {
	archive.Sink
	delay time.Duration
}

func (s slowSink) Get(ctx context.Context, key string) ([]byte, error) {
	time.Sleep(s.delay)
	return s.Sink.Get(ctx, key)
}

// TestArchive_ReadAheadGrows: tried: an archive of 40 small batches whose every read waits
// 20 ms, so that the checks keep waiting for reads. Must hold: more readers start than the
// first one (the report says how many, within the bound of 8), and the archive verifies as
// intact, every entry in order.
func TestArchive_ReadAheadGrows(t *testing.T) {
	a := newArchived(t, 400, 10)
	rep, err := verify.Archive(context.Background(), slowSink{Sink: a.sink, delay: 20 * time.Millisecond}, a.pub)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Entries != 400 || rep.Batches != 40 {
		t.Fatalf("report: intact %v, %d entries, %d batches; want intact, 400, 40: %+v", rep.Intact(), rep.Entries, rep.Batches, rep.Problems)
	}
	if rep.Readers < 2 || rep.Readers > 8 {
		t.Errorf("readers: %d; reads that keep the checks waiting must add readers, up to 8", rep.Readers)
	}
	t.Logf("%d readers", rep.Readers)
}
