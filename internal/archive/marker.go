package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pgtrail/pgtrail/internal/archive/file"
)

// MarkerKey is the object that marks a sink as a pgtrail archive from the moment it is made
// (pgtrail stream, pgtrail archive init), before anything is archived: a verifier then tells a
// new, empty archive from a directory or prefix that is no archive at all (a wrong URL, /etc),
// which would otherwise verify as an intact, empty one. It is not signed and proves nothing
// about the archive's content.
const MarkerKey = "pgtrail-archive.json"

// markerContent is what Mark writes: the layout version, for a later layout to be told apart.
var markerContent = []byte(`{"pgtrail_archive_layout":1}` + "\n")

// Mark writes MarkerKey into sink unless it is there. A local directory that holds something
// else, and no archive (no marker, events/ or digests/), is refused: an archive needs a
// directory of its own, and `pgtrail stream --archive file:///etc` must not write into /etc.
// (An S3 prefix is not checked: listing a bucket of other things costs what it holds.)
func Mark(ctx context.Context, sink Sink) error {
	marked, err := IsMarked(ctx, sink)
	if err != nil || marked {
		return err
	}
	if fs, ok := sink.(*file.Sink); ok {
		if err := ownDirectory(fs.Root()); err != nil {
			return fmt.Errorf("mark archive: %w", err)
		}
	}
	if err := sink.Put(ctx, MarkerKey, markerContent); err != nil {
		return fmt.Errorf("mark archive: %w", err)
	}
	return nil
}

// ownDirectory returns an error when dir holds entries that are not an archive's: anything but
// events/, digests/, hidden entries (a Put's temporary files) and a file system's lost+found (a
// volume mounted for the archive).
func ownDirectory(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case name+"/" == EventsPrefix, name+"/" == DigestsPrefix, name == "lost+found", strings.HasPrefix(name, "."):
		default:
			return fmt.Errorf("%s holds %s, which no archive does: an archive needs a directory of its own", dir, name)
		}
	}
	return nil
}

// IsMarked reports whether sink holds MarkerKey.
func IsMarked(ctx context.Context, sink Sink) (bool, error) {
	_, err := sink.Get(ctx, MarkerKey)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read archive marker: %w", err)
}
