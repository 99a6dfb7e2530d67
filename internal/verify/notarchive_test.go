package verify_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// TestArchive_NotAnArchive points the verifier at what a wrong URL names: an empty directory,
// a directory of other files (/etc), one whose events/ and digests/ are there but empty. Once
// each verified as an intact archive of 0 entries (exit 0, a warning at most). What must
// survive: the meaning of "intact": each is ErrNotArchive, for Archive and for All (which
// fails before reading the database). An archive as the stream or archive init leaves it,
// marked and empty, is still intact.
func TestArchive_NotAnArchive(t *testing.T) {
	pub, _ := archive.GenerateKey()
	dirs := map[string]func(t *testing.T, dir string){
		"Empty": func(*testing.T, string) {},
		"OtherFiles": func(t *testing.T, dir string) {
			for _, name := range []string{"passwd", "hosts", "ssl/openssl.cnf"} {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil || os.WriteFile(p, []byte("x"), 0o644) != nil {
					t.Fatal(err)
				}
			}
		},
		"EmptyLayoutDirectories": func(t *testing.T, dir string) {
			for _, name := range []string{"events", "digests"} {
				if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
	for name, fill := range dirs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir)
			sink, err := archive.Open(context.Background(), "file://"+dir, archive.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := verify.Archive(context.Background(), sink, pub); !errors.Is(err, verify.ErrNotArchive) {
				t.Errorf("Archive = %+v, %v; want ErrNotArchive", rep, err)
			}
			// All lists the archive before it reads the database: nil is never queried.
			if rep, err := (&verify.Verifier{}).All(context.Background(), nil, sink, pub); !errors.Is(err, verify.ErrNotArchive) {
				t.Errorf("All = %+v, %v; want ErrNotArchive", rep, err)
			}
		})
	}
	t.Run("MarkedAndEmpty", func(t *testing.T) {
		dir := t.TempDir()
		sink, err := archive.Open(context.Background(), "file://"+dir, archive.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := archive.Mark(context.Background(), sink); err != nil {
			t.Fatal(err)
		}
		rep, err := verify.Archive(context.Background(), sink, pub)
		if err != nil || !rep.Intact() || rep.Entries != 0 {
			t.Errorf("Archive of a new, marked archive = %+v, %v; want intact, 0 entries", rep, err)
		}
	})
}
