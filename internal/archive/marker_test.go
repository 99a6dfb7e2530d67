package archive_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
)

// TestMark makes archives where the stream and archive init make them: a new directory, an
// archive written before the marker existed, a volume's root (lost+found), and tries the one it
// must refuse: a directory of other files (what --archive file:///etc names). What must survive:
// such a directory, untouched (no marker, no events/); everywhere else the marker is written,
// once, and IsMarked sees it.
func TestMark(t *testing.T) {
	cases := []struct {
		name    string
		entries []string // made in the directory first; a trailing / makes a directory
		wantErr string
	}{
		{"NewDirectory", nil, ""},
		{"ArchiveWithoutMarker", []string{"events/", "digests/"}, ""},
		{"VolumeRoot", []string{"lost+found/", ".snapshot/"}, ""},
		{"OtherFiles", []string{"passwd", "events/"}, "holds passwd, which no archive does: an archive needs a directory of its own"},
		{"OtherDirectory", []string{"ssl/"}, "holds ssl, which no archive does"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			for _, e := range c.entries {
				p := filepath.Join(dir, strings.TrimSuffix(e, "/"))
				var err error
				if strings.HasSuffix(e, "/") {
					err = os.Mkdir(p, 0o755)
				} else {
					err = os.WriteFile(p, []byte("x"), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			sink, err := archive.Open(ctx, "file://"+dir, archive.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = archive.Mark(ctx, sink)
			marked, merr := archive.IsMarked(ctx, sink)
			if merr != nil {
				t.Fatal(merr)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("Mark = %v, want an error with %q", err, c.wantErr)
				}
				if _, serr := os.Lstat(filepath.Join(dir, archive.MarkerKey)); marked || !errors.Is(serr, fs.ErrNotExist) {
					t.Errorf("the refused directory was marked (%v)", serr)
				}
				return
			}
			if err != nil || !marked {
				t.Fatalf("Mark = %v, IsMarked = %v; want the marker", err, marked)
			}
			if err := archive.Mark(ctx, sink); err != nil {
				t.Errorf("Mark of a marked archive = %v", err)
			}
		})
	}
}
