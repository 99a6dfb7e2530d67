// Package archive writes sealed audit events to write-once storage: Parquet files partitioned by
// tenant and day for Athena, and after each batch one signed digest per file, chained to the one
// before, so that a verifier holding only the public key can prove the archive complete and
// unaltered.
//
// Storage is a Sink: archive/file (a local directory) or archive/s3 (a bucket with Object Lock),
// opened from a URL by Open. archive/sinktest holds the behaviour every sink must show.
package archive

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/archive/internal/object"
	"github.com/pgtrail/pgtrail/internal/archive/s3"
)

// Sink stores immutable archive objects.
//
// Keys are relative paths of '/'-separated components: not empty, no component empty or starting
// with '.', no backslash or control character, valid UTF-8, at most 900 bytes. Every method
// rejects other keys with an error. Errors from storage carry the operation and the key
// ("put events/…: …"); IsRetryable tells outages from errors that a retry cannot fix.
type Sink interface {
	// Put stores data under key durably before returning. Objects are immutable: when key already
	// exists, Put returns nil without writing (a retry after a crash writes the same bytes).
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object's content, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the keys under prefix (a plain string prefix, as in S3), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
}

// BufferGetter is a Sink that can read an object into a buffer the caller reuses. Verification
// reads every data file of the archive, a few MiB each: a fresh buffer per file costs the kernel
// a page fault per 4 KiB, more than reading the bytes does.
type BufferGetter interface {
	// GetBuffer is Get into buf: it returns the content of key in buf's storage (grown when too
	// small, so the result may not alias buf), or an error wrapping ErrNotFound. Unlike Get it
	// does not check the content against a checksum stored with the object (S3's): the caller
	// checks what it reads itself, as verify holds each data file to the SHA-256 its signed
	// digest records. buf's old content is lost, even on error.
	GetBuffer(ctx context.Context, key string, buf []byte) ([]byte, error)
}

// GetBuffer reads key from s into buf (see BufferGetter), with s.Get when s cannot.
func GetBuffer(ctx context.Context, s Sink, key string, buf []byte) ([]byte, error) {
	if b, ok := s.(BufferGetter); ok {
		return b.GetBuffer(ctx, key, buf)
	}
	return s.Get(ctx, key)
}

// IsLocal reports whether s reads from a local directory, where a read waits on nothing but the
// disk: a reader then needs no more goroutines than cores, where S3's latency wants more.
func IsLocal(s Sink) bool {
	_, ok := s.(*file.Sink)
	return ok
}

// ErrNotFound is wrapped by Sink.Get for a missing key. errors.Is(err, fs.ErrNotExist) matches it
// too.
var ErrNotFound = object.ErrNotFound

// ErrTooLarge is wrapped by Sink.Get for an object larger than an archive's objects ever are
// (1 GiB): it is not read, so that an object planted in the archive cannot take a reader's memory.
var ErrTooLarge = object.ErrTooLarge

// CheckKey returns an error when key is not a valid Sink key (see Sink).
func CheckKey(key string) error { return object.CheckKey(key) }

// Options configure the sink Open returns. Only S3 uses them.
type Options struct {
	// Endpoint is the base URL of an S3-compatible server (--s3-endpoint); it implies path-style
	// addressing. Empty means AWS.
	Endpoint string
	// Region signs S3 requests; empty means the AWS configuration's region, else us-east-1.
	Region string
	// Retention locks every object until now + Retention; 0 sends no lock.
	Retention time.Duration
	// LockMode is "COMPLIANCE" (the default when empty) or "GOVERNANCE".
	LockMode string
	// SSEKMSKeyID, when set, encrypts objects with this KMS key (aws:kms).
	SSEKMSKeyID string
	// AccessKey and SecretKey replace the AWS default credential chain when both are set.
	AccessKey, SecretKey string
	// Create makes a missing file:// directory (not its parents), for the archive's writer
	// (pgtrail stream, pgtrail archive init). Without it a missing directory is an error wrapping
	// fs.ErrNotExist: readers must not take a mistyped path for an empty archive, nor create it.
	// (A missing S3 bucket is an error on the first request either way.)
	Create bool
}

var (
	_ Sink         = (*file.Sink)(nil)
	_ Sink         = (*s3.Sink)(nil)
	_ BufferGetter = (*file.Sink)(nil)
	_ BufferGetter = (*s3.Sink)(nil)
)

// Open returns the sink rawURL names: file:///absolute/path or s3://bucket/prefix.
func Open(ctx context.Context, rawURL string, opts Options) (Sink, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		newSink := file.Open
		if opts.Create {
			newSink = file.New
		}
		s, err := newSink(filepath.FromSlash(u.Path))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		return s, nil
	default:
		cfg := s3.Config{Retention: opts.Retention, LockMode: opts.LockMode, SSEKMSKeyID: opts.SSEKMSKeyID}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		client, err := s3.NewClient(ctx, s3.ClientConfig{Endpoint: opts.Endpoint, Region: opts.Region,
			AccessKey: opts.AccessKey, SecretKey: opts.SecretKey})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		s, err := s3.New(client, u.Host, u.Path, cfg)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		return s, nil
	}
}

// ParseURL checks that rawURL names a sink Open accepts and returns it parsed: for file, Path is
// the absolute directory; for s3, Host is the bucket and Path the prefix without slashes around it.
func ParseURL(rawURL string) (*url.URL, error) {
	const accepted = "want file:///absolute/path or s3://bucket[/prefix]"
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("archive URL %q: %w (%s)", rawURL, err, accepted)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("archive URL %q: unexpected query, fragment, user or opaque part (%s)", rawURL, accepted)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			// file://tmp/arch: "tmp" is the host. Such URLs were once taken as relative paths,
			// which put an archive wherever the command ran.
			return nil, fmt.Errorf("archive URL %q: file URLs take no host (here %q) and need an absolute path: write file:///%s",
				rawURL, u.Host, u.Host+u.Path)
		}
		if !strings.HasPrefix(u.Path, "/") || u.Path == "/" {
			return nil, fmt.Errorf("archive URL %q: file path must be absolute and not / (%s)", rawURL, accepted)
		}
		u.Host = ""
	case "s3":
		if u.Host == "" || u.Port() != "" {
			return nil, fmt.Errorf("archive URL %q: no bucket, or a port after it; the endpoint goes in --s3-endpoint (%s)", rawURL, accepted)
		}
		u.Path = strings.Trim(u.Path, "/")
		if u.Path != "" {
			if err := object.CheckKey(u.Path); err != nil {
				return nil, fmt.Errorf("archive URL %q: prefix: %w", rawURL, err)
			}
		}
	default:
		return nil, fmt.Errorf("archive URL %q: unsupported scheme %q (%s)", rawURL, u.Scheme, accepted)
	}
	return u, nil
}
