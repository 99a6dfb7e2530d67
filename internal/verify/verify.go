// Package verify checks pgtrail's audit trail and reports where and how it was broken: the hash
// chain in the database (DB), the archive's Parquet files and signed digests (Archive), and the
// two against each other (All).
//
// Every check streams: memory stays flat however long the trail, and reading overlaps hashing.
// A reader decodes rows (COPY in binary format from PostgreSQL, Parquet pages from the archive)
// into batches, workers hash the batches in parallel — each entry's hash depends only on its own
// stored prev_hash, so entries can be hashed in any order — and the links between entries are
// then checked in chain order on one goroutine.
//
// Runs can be incremental: a Checkpoint, signed by the verifier, records where an intact run
// ended, and the next run starts from it (after checking that the checkpointed entry is still
// the one that was verified).
package verify

import (
	"errors"
	"runtime"
	"time"
)

// Kind names how the trail was broken.
type Kind string

// The kinds of damage verification tells apart.
const (
	Modified  Kind = "modified"  // an entry's or an object's content no longer matches its hash
	Deleted   Kind = "deleted"   // entries or archive objects are missing (a gap, a truncated tail)
	Inserted  Kind = "inserted"  // an entry or object the chain never held (duplicate seq, beyond the head, forged)
	Reordered Kind = "reordered" // an intact entry sits at another position than the one it was chained at
	Relinked  Kind = "relinked"  // a link (prev_hash, prev_digest_signature) does not match its predecessor
	Forged    Kind = "forged"    // a digest whose signature does not verify with the public key
	// Unsigned: data files no signed digest covers (a last batch whose digests are missing),
	// holding entries older than the archive lag, or dated in the future: not the stream at work.
	Unsigned Kind = "unsigned"

	// CaptureWarning: an entry the stream captured from the WAL flagged in
	// details.capture_warning: the change was made with pgtrail's triggers disabled (who made it
	// is unknown), or its before image was incomplete (the table's replica identity was changed).
	CaptureWarning Kind = "capture_warning"

	// MissingFromArchive: database entries older than the streaming lag that the archive does
	// not hold.
	MissingFromArchive Kind = "missing_from_archive"
	// MissingFromDatabase: archived entries beyond the end of the database's chain.
	MissingFromDatabase Kind = "missing_from_database"
)

// Source says which check found a problem.
type Source string

// Sources of problems.
const (
	SourceDB      Source = "db"      // the chain in audit.events
	SourceArchive Source = "archive" // the Parquet files and digests
	SourceCross   Source = "cross"   // the database against the archive
)

// Problem is one break in the trail.
type Problem struct {
	// Seq is the entry concerned, or the first of a range; 0 when the problem is about an
	// archive object rather than an entry.
	Seq    int64  `json:"seq"`
	Kind   Kind   `json:"kind"`
	Detail string `json:"detail"`
	Source Source `json:"source,omitempty"`
	// Key is the archive object concerned (data file or digest), relative to the archive.
	Key string `json:"key,omitempty"`
}

// Report is the outcome of a verification run.
type Report struct {
	// Scope is "db", "archive" or "all".
	Scope string `json:"scope"`
	// Entries is how many entries were hashed and checked (in All, by the database check).
	Entries  int64 `json:"entries"`
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`

	// HeadSeq and HeadHash are audit.chain_head's; Unsealed counts audit.pending (database).
	HeadSeq  int64  `json:"head_seq,omitempty"`
	HeadHash string `json:"head_hash,omitempty"`
	Unsealed int64  `json:"unsealed,omitempty"`
	// Streams is how many COPY streams read the database (see Verifier.DBStreams).
	Streams int `json:"db_streams,omitempty"`
	// Readers is how many goroutines read a remote archive ahead of the checks: one, and more
	// when the checks had to wait for reads (up to 8).
	Readers int `json:"archive_readers,omitempty"`

	// Batches, Files, Digests and Bytes count what was read of the archive (archive).
	Batches int64 `json:"batches,omitempty"`
	Files   int64 `json:"files,omitempty"`
	Digests int64 `json:"digests,omitempty"`
	Bytes   int64 `json:"bytes,omitempty"`
	// InProgress is the range of a last batch the stream daemon is still writing (data files
	// without all their digests yet): not verified, not a problem.
	InProgress string `json:"in_progress,omitempty"`

	// CrossChecked counts archived entries compared with the database (all).
	CrossChecked int64 `json:"cross_checked,omitempty"`
	// DB and Archive are the reports of the two checks that make up All.
	DB      *Report `json:"db,omitempty"`
	Archive *Report `json:"archive,omitempty"`

	// Since is the checkpoint the run started from, nil for a full run.
	Since *Checkpoint `json:"since,omitempty"`
	// Checkpoint is where an incremental run may start next; set only when the run found the
	// trail intact, and unsigned: the caller signs and stores it.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`

	Problems    []Problem `json:"problems"`
	Truncated   bool      `json:"problems_truncated,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	EntriesPerS float64   `json:"entries_per_second"`
}

// Intact reports whether no problem was found.
func (r *Report) Intact() bool { return len(r.Problems) == 0 && !r.Truncated }

// maxProblems bounds a report: after a break, every later entry may be reported, which helps nobody.
const maxProblems = 100

func (r *Report) add(p Problem) {
	if len(r.Problems) >= maxProblems {
		r.Truncated = true
		return
	}
	r.Problems = append(r.Problems, p)
}

// finish stamps the end of the run and its rate.
func (r *Report) finish() {
	r.FinishedAt = time.Now()
	if d := r.FinishedAt.Sub(r.StartedAt).Seconds(); d > 0 {
		r.EntriesPerS = float64(r.Entries) / d
	}
}

// ErrTampered is returned by callers that turn a damaged report into an error.
var ErrTampered = errors.New("audit chain is broken")

// Verifier holds the settings of verification runs. The zero value does full runs with one
// worker per CPU.
type Verifier struct {
	// Since, when set, makes the run incremental: it starts at this checkpoint, whose signature
	// the caller has checked (see Checkpoint.Verify), and walks only what came after it.
	Since *Checkpoint
	// Pruned, when set, is where the chain in the database starts after retention pruned its
	// oldest entries (the last signed anchor of audit.chain_anchors, its signature checked by
	// the caller): the database holds seq Pruned.Seq+1 on, linked to Pruned.EntryHash, and
	// All does not expect archived entries up to Pruned.Seq in the database.
	Pruned *PrunedPrefix
	// Progress, when set, is called after each batch with what is done so far; it must return
	// quickly, and be safe for concurrent use (All reports from two goroutines).
	Progress func(Progress)
	// ArchiveLag is how old a database entry must be before All requires it in the archive;
	// 0 means DefaultArchiveLag.
	ArchiveLag time.Duration
	// Workers is how many goroutines hash (and, for the archive, decode and check batches) at
	// once; 0 means runtime.GOMAXPROCS(0). An archive in S3 also has its own readers fetching
	// the next batches meanwhile.
	Workers int
	// DBStreams is how many COPY streams (connections, sharing one snapshot) read the database
	// at once; 0 means DefaultDBStreams, or one per two cores of this machine (at least one) when
	// the server is on it too. The server's formatting of rows is the bottleneck.
	DBStreams int

	now func() time.Time // for tests
}

// PrunedPrefix is a pruned start of the database's chain: entries up to Seq were removed, and
// entry Seq+1 links to EntryHash.
type PrunedPrefix struct {
	Seq       int64
	EntryHash []byte
}

// DefaultArchiveLag is Verifier.ArchiveLag's default: well above the stream daemon's batching
// delay (a second by default), so that entries in flight are not reported.
const DefaultArchiveLag = 10 * time.Minute

// Progress is how far a run has got.
type Progress struct {
	// Scope is the check reporting: "db" or "archive".
	Scope string
	// Done counts entries checked; Total is how many the run expects (0 when unknown).
	Done, Total int64
}

func (v *Verifier) workers(min int) int {
	n := v.Workers
	if n <= 0 {
		n = max(runtime.GOMAXPROCS(0), min)
	}
	return n
}

func (v *Verifier) progress(scope string, done, total int64) {
	if v.Progress != nil {
		v.Progress(Progress{Scope: scope, Done: done, Total: total})
	}
}

func (v *Verifier) clock() time.Time {
	if v.now != nil {
		return v.now()
	}
	return time.Now()
}
