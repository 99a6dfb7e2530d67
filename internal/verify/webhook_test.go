package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/verify"
)

// TestWebhook_Send posts an alert to servers that answer in the ways webhooks do: what a retry
// can fix (5xx, 408, 429, a timeout) is retried with the same alert id, what it cannot (another
// 4xx, a redirect: never followed) is not, and the receiver gets the report's problems as JSON.
func TestWebhook_Send(t *testing.T) {
	rep := &verify.Report{Scope: "all", Problems: []verify.Problem{{Seq: 7, Kind: verify.Modified, Detail: "x", Source: verify.SourceDB}}}
	alert := verify.NewAlert("all", "s3://b/p", "host1", rep, nil)
	cases := []struct {
		name     string
		answers  []int // status per attempt; 0: too slow
		attempts int
		ok       bool
	}{
		{"FirstTime", []int{200}, 1, true},
		{"ServerErrorThenOK", []int{500, 503, 204}, 3, true},
		{"RateLimitedThenOK", []int{429, 200}, 2, true},
		{"RequestTimeoutThenOK", []int{408, 200}, 2, true},
		{"TimeoutThenOK", []int{0, 200}, 2, true},
		{"ClientErrorNotRetried", []int{400, 200}, 1, false},
		{"RedirectNotFollowed", []int{302, 200}, 1, false},
		{"GivesUp", []int{500, 500, 500, 500, 500}, 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var ids []string
			var got verify.Alert
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n := len(ids)
				ids = append(ids, r.Header.Get("X-Pgtrail-Alert-Id"))
				mu.Unlock()
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
				}
				// Decoded apart, then kept under the lock: a timed-out attempt's handler still
				// runs while the retry's does.
				var a verify.Alert
				if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
					t.Errorf("body: %v", err)
				}
				mu.Lock()
				got = a
				mu.Unlock()
				if c.answers[n] == 0 {
					time.Sleep(300 * time.Millisecond)
					return
				}
				if c.answers[n]/100 == 3 {
					w.Header().Set("Location", "/moved")
				}
				w.WriteHeader(c.answers[n])
			}))
			defer srv.Close()
			w := &verify.Webhook{URL: srv.URL, Timeout: 100 * time.Millisecond, Retries: 2, Backoff: 10 * time.Millisecond}
			err := w.Send(context.Background(), alert)
			mu.Lock()
			defer mu.Unlock()
			if (err == nil) != c.ok || len(ids) != c.attempts {
				t.Fatalf("err %v after %d attempts; want ok=%v after %d", err, len(ids), c.ok, c.attempts)
			}
			for _, id := range ids {
				if id == "" || id != ids[0] {
					t.Errorf("alert ids %q: want one, the same on every attempt", ids)
				}
			}
			if got.Result != "tampered" || got.ExitCode != 1 || got.ProblemCount != 1 || got.Problems[0].Seq != 7 || got.Host != "host1" {
				t.Errorf("received %+v", got)
			}
		})
	}

	t.Run("Unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		w := &verify.Webhook{URL: srv.URL + "/hook?token=s3cret", Retries: 1, Backoff: time.Millisecond}
		err := w.Send(context.Background(), verify.NewAlert("db", "", "h", nil, errors.New("boom")))
		if err == nil {
			t.Fatal("delivery to a closed server reported success")
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the webhook's secret: %v", err)
		}
	})
}
