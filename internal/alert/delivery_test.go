package alert_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/alert"
)

// request is one webhook call as the server saw it.
type request struct {
	header http.Header
	body   []byte
}

// hook is a webhook receiver: it answers with the next status of its script (200 once the
// script is used up) and keeps every request.
type hook struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []request
	statuses []int
	block    chan struct{} // when set, requests wait for it to close
	got      chan struct{} // a token per request
}

func newHook(t *testing.T, statuses ...int) *hook {
	h := &hook{statuses: statuses, got: make(chan struct{}, 1000)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, request{r.Header.Clone(), body})
		status := http.StatusOK
		if len(h.statuses) > 0 {
			status, h.statuses = h.statuses[0], h.statuses[1:]
		}
		block := h.block
		h.mu.Unlock()
		h.got <- struct{}{}
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		if status/100 == 3 {
			w.Header().Set("Location", "/moved")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) requests() []request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]request(nil), h.reqs...)
}

// wait waits for n requests in all.
func (h *hook) wait(t *testing.T, n int, timeout time.Duration) []request {
	t.Helper()
	deadline := time.After(timeout)
	for len(h.requests()) < n {
		select {
		case <-h.got:
		case <-deadline:
			t.Fatalf("webhook got %d requests within %s, want %d", len(h.requests()), timeout, n)
		}
	}
	return h.requests()
}

// testLog is where alert logs go in tests: nowhere, unless PGTRAIL_TEST_LOG is set.
func testLog() io.Writer {
	if os.Getenv("PGTRAIL_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// exportRules: one bulk_export rule sending to the webhook at ${HOOK}, quick retries.
const exportRules = `
webhooks:
  ops:
    url: ${HOOK}/alerts
    headers: {Authorization: "Bearer ${TOKEN}"}
    timeout: 5s
    max_attempts: 4
    backoff: 10ms
    max_backoff: 50ms
default_webhooks: [ops]
queue_size: %d
stop_timeout: %s
rules:
  - {name: export, type: bulk_export}
`

// observer builds and starts an Observer (no database) on rules sending to h.
func observer(t *testing.T, h *hook, queue int, stopTimeout string, log io.Writer) (*alert.Observer, *alert.Metrics) {
	t.Helper()
	cfg, err := alert.Parse([]byte(fmt.Sprintf(exportRules, queue, stopTimeout)), "rules.yaml",
		func(k string) (string, bool) { return map[string]string{"HOOK": h.URL, "TOKEN": "t0k3n"}[k], true })
	if err != nil {
		t.Fatal(err)
	}
	m := alert.NewMetrics(nil)
	o, err := alert.New(cfg, alert.Options{Logger: slog.New(slog.NewTextHandler(log, nil)), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	o.Start(context.Background())
	t.Cleanup(o.Stop)
	return o, m
}

// exports returns n EXPORT events of 20,000 rows, each by a different actor (so each alerts).
func exports(first, n int) []pgtrail.Event {
	var out []pgtrail.Event
	for i := first; i < first+n; i++ {
		d := `{"rows": 20000}`
		out = append(out, pgtrail.Event{Seq: int64(i), EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			OccurredAt: time.Now(), ActionType: "EXPORT", ResourceType: "report", Outcome: "SUCCESS",
			ActorID: fmt.Sprintf("user%d", i), DBUser: "app", Details: &d})
	}
	return out
}

// TestObserver_Retry: a webhook that fails twice with 500 gets the same alert a third time, and
// that counts as delivered.
func TestObserver_Retry(t *testing.T) {
	h := newHook(t, 500, 503)
	o, m := observer(t, h, 10, "5s", testLog())
	o.Archived(context.Background(), exports(1, 1))
	reqs := h.wait(t, 3, 10*time.Second)
	for i, r := range reqs {
		if r.header.Get("Authorization") != "Bearer t0k3n" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d headers %v", i, r.header)
		}
		if !bytes.Equal(r.body, reqs[0].body) || r.header.Get("X-Pgtrail-Alert-Id") != reqs[0].header.Get("X-Pgtrail-Alert-Id") {
			t.Errorf("retry %d differs from the first attempt", i)
		}
	}
	o.Stop()
	if n := len(h.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultDelivered)); got != 1 {
		t.Errorf("delivered = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Attempts.WithLabelValues("webhook:ops")); got != 3 {
		t.Errorf("attempts = %v, want 3", got)
	}
}

// TestObserver_Refused: a 4xx answer is not retried; attempts stop at max_attempts otherwise.
func TestObserver_Refused(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		requests int
	}{
		{"BadRequest", []int{400}, 1},
		{"Redirect", []int{302}, 1},
		{"AlwaysDown", []int{500, 500, 500, 500, 500, 500}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, tc.statuses...)
			o, m := observer(t, h, 10, "5s", testLog())
			o.Archived(context.Background(), exports(1, 1))
			h.wait(t, tc.requests, 10*time.Second)
			o.Stop()
			if n := len(h.requests()); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
			if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultFailed)); got != 1 {
				t.Errorf("failed = %v, want 1", got)
			}
		})
	}
}

// TestObserver_QueueFull: with the webhook stuck, Archived still returns at once; alerts beyond
// the queue are dropped and counted; Stop delivers the queued ones once the webhook recovers.
func TestObserver_QueueFull(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	var logs bytes.Buffer
	var mu sync.Mutex
	o, m := observer(t, h, 2, "10s", writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }))
	o.Archived(context.Background(), exports(1, 1))
	h.wait(t, 1, 5*time.Second) // the worker is stuck on the first alert
	start := time.Now()
	o.Archived(context.Background(), exports(2, 10))
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Archived took %s with the webhook stuck: it must not block the stream", d)
	}
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultDropped)); got != 8 {
		t.Errorf("dropped = %v, want 8 (10 alerts, queue of 2)", got)
	}
	close(h.block)
	o.Stop()
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultDelivered)); got != 3 {
		t.Errorf("delivered = %v, want 3", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "alert queue full") {
		t.Errorf("no log about the full queue:\n%s", logs.String())
	}
}

// TestObserver_StopTimeout: a webhook that never answers does not hold Stop beyond its timeout;
// what was not delivered is counted as abandoned. A second Stop is harmless.
func TestObserver_StopTimeout(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	defer close(h.block)
	o, m := observer(t, h, 10, "300ms", testLog())
	o.Archived(context.Background(), exports(1, 3))
	h.wait(t, 1, 5*time.Second)
	start := time.Now()
	o.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %s with a 300ms stop timeout", d)
	}
	o.Stop()
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultAbandoned)); got != 3 {
		t.Errorf("abandoned = %v, want 3", got)
	}
	o.Archived(context.Background(), exports(10, 1)) // after Stop: not delivered, not blocking
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("webhook:ops", alert.ResultAbandoned)); got != 4 {
		t.Errorf("abandoned after a late alert = %v, want 4", got)
	}
}

// TestObserver_SecretURL: a webhook URL may carry a token; failures are logged without it.
func TestObserver_SecretURL(t *testing.T) {
	h := newHook(t)
	h.Close() // nothing listens any more
	var logs bytes.Buffer
	var mu sync.Mutex
	cfg, err := alert.Parse([]byte(`
webhooks:
  chat: {url: "`+h.URL+`/hooks/T0KEN-IN-PATH", max_attempts: 2, backoff: 10ms}
rules:
  - {name: export, type: bulk_export, webhooks: [chat]}
`), "r.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := alert.New(cfg, alert.Options{Logger: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))})
	if err != nil {
		t.Fatal(err)
	}
	o.Start(context.Background())
	o.Archived(context.Background(), exports(1, 1))
	o.Stop()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "alert not delivered") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "T0KEN") {
		t.Errorf("the webhook URL's secret reached the log:\n%s", logs.String())
	}
}

// TestAlert_JSON: the webhook body's field names.
func TestAlert_JSON(t *testing.T) {
	ip := "203.0.113.7"
	a := alert.Alert{Rule: "r", Severity: "high", Key: "ip:203.0.113.7", Summary: "s", FirstSeq: 1, LastSeq: 2,
		Events: []alert.EventRef{{Seq: 1, EventID: "e", ActorID: "a", ActorIP: &ip, ActionType: "FAILED_LOGIN", ResourceType: "user"}}}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	want := "events,fired_at,first_seq,key,last_seq,rule,severity,summary"
	if got := strings.Join(keys(m), ","); got != want {
		t.Errorf("alert fields %s, want %s", got, want)
	}
	ev := m["events"].([]any)[0].(map[string]any)
	want = "action_type,actor_id,actor_ip,event_id,occurred_at,resource_id,resource_type,seq"
	if got := strings.Join(keys(ev), ","); got != want {
		t.Errorf("event fields %s, want %s", got, want)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
