// Package sinktest is the behaviour every archive.Sink must show, as one test suite that each sink
// package runs against its own sink (as litestream's RunWithReplicaClient does for replica
// clients), so that the file and S3 sinks cannot drift apart.
package sinktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/internal/object"
)

// Run runs the suite. newSink must return a new, empty sink for the test it is given, and clean
// it up with t.Cleanup if needed.
func Run(t *testing.T, newSink func(t *testing.T) archive.Sink) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s archive.Sink)
	}{
		{"PutGet", testPutGet},
		{"PutExistingKeepsOriginal", testPutExisting},
		{"ListSortedAndPrefixFiltered", testList},
		{"GetMissing", testGetMissing},
		{"NestedKeys", testNestedKeys},
		{"LargeObject", testLargeObject},
		{"BadKeysRejected", testBadKeys},
		{"CanceledContext", testCanceled},
		{"ConcurrentPuts", testConcurrentPuts},
		{"GetBuffer", testGetBuffer},
		{"TooLargeNotRead", testTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newSink(t)) })
	}
}

func testPutGet(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	cases := map[string][]byte{
		"plain.json":          []byte(`{"a":1}` + "\n"),
		"empty":               {},
		"binary.parquet":      {0, 1, 2, 0xff, 'P', 'A', 'R', '1'},
		"unicodé/名前/ключ.txt": []byte("snowman ☃"),
	}
	for key, data := range cases {
		if err := s.Put(ctx, key, data); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	for key, want := range cases {
		got, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%q) after Put: %v", key, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Get(%q) = %q, want the %q that was put", key, got, want)
		}
	}
}

func testPutExisting(t *testing.T, s archive.Sink) {
	// Tried: a second Put of an existing key with other bytes. Must survive: the original bytes.
	ctx := context.Background()
	key := "events/tenant=a/dt=2024-01-01/00000000000000000001-00000000000000000002.parquet"
	if err := s.Put(ctx, key, []byte("original")); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	for _, data := range [][]byte{[]byte("original"), []byte("replacement"), {}} {
		if err := s.Put(ctx, key, data); err != nil {
			t.Errorf("Put(%q) over an existing key = %v, want nil (a no-op)", data, err)
		}
	}
	got, err := s.Get(ctx, key)
	if err != nil || string(got) != "original" {
		t.Errorf("Get after repeated Puts = %q, %v; want the original content", got, err)
	}
	keys, err := s.List(ctx, "")
	if err != nil || !slices.Equal(keys, []string{key}) {
		t.Errorf("List after repeated Puts = %q, %v; want just %q", keys, err, key)
	}
}

func testList(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	put := []string{
		"events/tenant=b/dt=2024-01-02/2.parquet",
		"digests/00000000000000000001-00000000000000000002/1.json",
		"events/tenant=a/dt=2024-01-01/1.parquet",
		"eventsX/z",
		"events/tenant=a/dt=2024-01-02/1.parquet",
		"digests/00000000000000000001-00000000000000000002/0.json",
		"top",
	}
	for _, k := range put {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	all := slices.Clone(put)
	slices.Sort(all)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"events/", []string{"events/tenant=a/dt=2024-01-01/1.parquet", "events/tenant=a/dt=2024-01-02/1.parquet", "events/tenant=b/dt=2024-01-02/2.parquet"}},
		{"events", []string{"events/tenant=a/dt=2024-01-01/1.parquet", "events/tenant=a/dt=2024-01-02/1.parquet", "events/tenant=b/dt=2024-01-02/2.parquet", "eventsX/z"}},
		{"events/tenant=a", []string{"events/tenant=a/dt=2024-01-01/1.parquet", "events/tenant=a/dt=2024-01-02/1.parquet"}},
		{"events/tenant=a/dt=2024-01-02/", []string{"events/tenant=a/dt=2024-01-02/1.parquet"}},
		{"digests/", []string{"digests/00000000000000000001-00000000000000000002/0.json", "digests/00000000000000000001-00000000000000000002/1.json"}},
		{"to", []string{"top"}},
		{"nothing/", nil},
		{"events/tenant=c/", nil},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tt.prefix, err)
			continue
		}
		if len(got) != len(tt.want) || (len(got) > 0 && !slices.Equal(got, tt.want)) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func testGetMissing(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	if err := s.Put(ctx, "dir/present", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"absent", "dir/absent", "dir/present/below", "nodir/absent"} {
		_, err := s.Get(ctx, key)
		if !errors.Is(err, archive.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Get(%q) = %v, want an error wrapping ErrNotFound and fs.ErrNotExist", key, err)
		}
		if err != nil && !strings.Contains(err.Error(), key) {
			t.Errorf("Get(%q) error %q does not name the key", key, err)
		}
		if archive.IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = true for a missing object", err)
		}
	}
}

func testNestedKeys(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	keys := []string{"a/b/c/d/e/f.json", "a/b/c/d/e/g.json", "a/b/x", "a/y"}
	for _, k := range keys {
		if err := s.Put(ctx, k, []byte("content of "+k)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	for _, k := range keys {
		if got, err := s.Get(ctx, k); err != nil || string(got) != "content of "+k {
			t.Errorf("Get(%q) = %q, %v", k, got, err)
		}
	}
	got, err := s.List(ctx, "a/b/")
	if want := []string{"a/b/c/d/e/f.json", "a/b/c/d/e/g.json", "a/b/x"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("List(a/b/) = %q, %v; want %q", got, err, want)
	}
}

func testLargeObject(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := s.Put(ctx, "large/object.bin", data); err != nil {
		t.Fatalf("Put 8 MiB: %v", err)
	}
	got, err := s.Get(ctx, "large/object.bin")
	if err != nil {
		t.Fatalf("Get 8 MiB: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Get 8 MiB returned %d bytes that differ from the %d put", len(got), len(data))
	}
}

func testBadKeys(t *testing.T, s archive.Sink) {
	// Tried: Put and Get with keys that escape the sink or are ambiguous. Must survive: nothing is
	// written, and each call fails with an error that is not "not found".
	ctx := context.Background()
	bad := []string{"", "/abs", "/", "../escape", "a/../../escape", "a/..", "..", ".", "./a", "a/./b",
		"a//b", "a/", "a/.hidden", ".hidden", `a\b`, "a\x00b", "a\nb", "\xff\xfe", strings.Repeat("k", 1000)}
	for _, key := range bad {
		if err := s.Put(ctx, key, []byte("x")); err == nil {
			t.Errorf("Put(%q) = nil, want an error", key)
		}
		if _, err := s.Get(ctx, key); err == nil || errors.Is(err, archive.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want an invalid-key error", key, err)
		}
	}
	keys, err := s.List(ctx, "")
	if err != nil || len(keys) != 0 {
		t.Errorf("List after rejected Puts = %q, %v; want nothing stored", keys, err)
	}
}

func testCanceled(t *testing.T, s archive.Sink) {
	// Tried: a Put with a canceled context. Must survive: nothing stored, an error naming the key
	// that wraps context.Canceled and is not retryable (the caller is shutting down).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Put(ctx, "canceled/key", []byte("x"))
	if !errors.Is(err, context.Canceled) || !strings.Contains(fmt.Sprint(err), "canceled/key") {
		t.Errorf("Put with canceled context = %v, want an error wrapping context.Canceled naming the key", err)
	}
	if archive.IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = true for a canceled context", err)
	}
	if _, err := s.Get(context.Background(), "canceled/key"); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("Get after canceled Put = %v, want ErrNotFound", err)
	}
}

func testConcurrentPuts(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			// Half the writers race for the same key with the same bytes, as two retries would.
			key := fmt.Sprintf("concurrent/%02d", i)
			if i%2 == 1 {
				key = "concurrent/shared"
			}
			errs[i] = s.Put(ctx, key, []byte(key))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Put %d: %v", i, err)
		}
	}
	keys, err := s.List(ctx, "concurrent/")
	if err != nil || len(keys) != 9 {
		t.Errorf("List after concurrent Puts = %q, %v; want 9 keys", keys, err)
	}
	if got, err := s.Get(ctx, "concurrent/shared"); err != nil || string(got) != "concurrent/shared" {
		t.Errorf("Get(concurrent/shared) = %q, %v", got, err)
	}
}

func testGetBuffer(t *testing.T, s archive.Sink) {
	// Tried: reading objects of several sizes into no buffer, a too-small one, a large one full of
	// other bytes, and a missing key. Must hold: the content read equals the content put, a buffer
	// with room is reused (the point of GetBuffer), and a missing key is ErrNotFound.
	bg, ok := s.(archive.BufferGetter)
	if !ok {
		t.Skip("the sink reads with Get only")
	}
	ctx := context.Background()
	objects := map[string][]byte{"empty": {}, "small": []byte("abc"), "large": make([]byte, 3<<20+17)}
	rand.Read(objects["large"])
	for key, data := range objects {
		if err := s.Put(ctx, key, data); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	big := bytes.Repeat([]byte{0xee}, 4<<20)
	for _, key := range []string{"empty", "small", "large"} {
		want := objects[key]
		for name, buf := range map[string][]byte{"nil": nil, "small": make([]byte, 1, 2), "big": big} {
			got, err := bg.GetBuffer(ctx, key, buf)
			if err != nil {
				t.Fatalf("GetBuffer(%q) into a %s buffer: %v", key, name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("GetBuffer(%q) into a %s buffer: %d bytes that differ from the %d put", key, name, len(got), len(want))
			}
			if name == "big" && len(got) > 0 && &got[0] != &big[0] {
				t.Errorf("GetBuffer(%q) did not reuse a buffer with room for it", key)
			}
		}
	}
	_, err := bg.GetBuffer(ctx, "absent", big)
	if !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("GetBuffer(absent) = %v, want an error wrapping ErrNotFound", err)
	}
	if _, err := bg.GetBuffer(ctx, "../escape", nil); err == nil || errors.Is(err, archive.ErrNotFound) {
		t.Errorf("GetBuffer(../escape) = %v, want a bad-key error", err)
	}
}

// testTooLarge: an object larger than the limit for archive objects (someone else put it there,
// to take the reader's memory) is refused, not read, by Get and GetBuffer. (The limit is lowered
// for the test: the suite's tests run one after the other.)
func testTooLarge(t *testing.T, s archive.Sink) {
	ctx := context.Background()
	data := make([]byte, 4096)
	if err := s.Put(ctx, "big/object.bin", data); err != nil {
		t.Fatal(err)
	}
	old := object.MaxSize
	object.MaxSize = 1024
	defer func() { object.MaxSize = old }()
	if _, err := s.Get(ctx, "big/object.bin"); !errors.Is(err, archive.ErrTooLarge) {
		t.Errorf("Get of 4 KiB with a 1 KiB limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := archive.GetBuffer(ctx, s, "big/object.bin", nil); !errors.Is(err, archive.ErrTooLarge) {
		t.Errorf("GetBuffer of 4 KiB with a 1 KiB limit: err = %v, want ErrTooLarge", err)
	}
}
