package archive_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	s3sink "github.com/pgtrail/pgtrail/internal/archive/s3"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

func TestOpen(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "archive")
	// Readers: a missing directory is an error, and is not created.
	if _, err := archive.Open(ctx, "file://"+dir, archive.Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(file://%s) of a missing directory = %v, want fs.ErrNotExist", dir, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open without Create created %s (stat: %v)", dir, err)
	}
	// The writer: the directory is created, not its parents.
	deep := filepath.Join(base, "missing", "archive")
	if _, err := archive.Open(ctx, "file://"+deep, archive.Options{Create: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(file://%s, Create) = %v, want fs.ErrNotExist for its missing parent", deep, err)
	}
	if _, err := os.Stat(filepath.Dir(deep)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open with Create created the parent %s (stat: %v)", filepath.Dir(deep), err)
	}
	s, err := archive.Open(ctx, "file://"+dir, archive.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if fs, ok := s.(*file.Sink); !ok || fs.Root() != dir {
		t.Errorf("Open(file://%s) = %#v, want a file sink rooted there", dir, s)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("Open did not create %s: %v", dir, err)
	}

	srv := testenv.S3(t)
	opts := archive.Options{Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	s, err = archive.Open(ctx, "s3://bucket/some/prefix/", opts)
	if err != nil {
		t.Fatal(err)
	}
	if ss, ok := s.(*s3sink.Sink); !ok || ss.Bucket() != "bucket" || ss.ObjectKey("k") != "some/prefix/k" {
		t.Errorf("Open(s3://bucket/some/prefix/) = %#v, want an S3 sink on bucket with prefix some/prefix", s)
	}

	tests := []struct {
		url, wantErr string
		opts         archive.Options
	}{
		{"/abs/path", `unsupported scheme ""`, archive.Options{}},
		{"gs://bucket/p", `unsupported scheme "gs"`, archive.Options{}},
		{"file://relative/dir", `file URLs take no host (here "relative") and need an absolute path: write file:///relative/dir`, archive.Options{}},
		{"file://tmp", "write file:///tmp", archive.Options{}},
		{"file:relative", "unexpected query, fragment, user or opaque part", archive.Options{}},
		{"file:///", "must be absolute and not /", archive.Options{}},
		{"s3://", "no bucket", archive.Options{}},
		{"s3://bucket:9000/p", "the endpoint goes in --s3-endpoint", archive.Options{}},
		{"s3://bucket/p?region=x", "unexpected query", archive.Options{}},
		{"s3://bucket/a/../b", "prefix", archive.Options{}},
		{"s3://bucket/p", "lock mode", archive.Options{LockMode: "STRICT"}},
		{"s3://bucket/p", "both an access key and a secret key", archive.Options{AccessKey: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := archive.Open(ctx, tt.url, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.url) {
				t.Errorf("Open(%q) = %v, want an error naming the URL and containing %q", tt.url, err, tt.wantErr)
			}
			if err != nil && strings.Contains(tt.wantErr, "scheme") && !strings.Contains(err.Error(), "file:///absolute/path or s3://bucket") {
				t.Errorf("Open(%q) error %q does not say what is accepted", tt.url, err)
			}
		})
	}
}

func TestWriter_S3(t *testing.T) {
	// The whole path against real S3 with Object Lock: Open by URL, write batches, resume from a
	// new writer, read and verify the digests.
	ctx := context.Background()
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	sink, err := archive.Open(ctx, "s3://"+bucket+"/trail", archive.Options{Endpoint: srv.Endpoint,
		Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv := archive.GenerateKey()
	events := chain(t, 1, 50, nil)
	if err := (&archive.Writer{Sink: sink, Key: priv}).WriteBatch(ctx, events[:20]); err != nil {
		t.Fatal(err)
	}
	if err := (&archive.Writer{Sink: sink, Key: priv}).WriteBatch(ctx, events[20:]); err != nil {
		t.Fatalf("second batch from a new writer (which resumes): %v", err)
	}
	checkArchive(t, sink, pub, events)
}
