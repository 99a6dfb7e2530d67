package webhook_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/webhook"
)

// answer is how the test server answers one request.
type answer struct {
	status     int           // 0: never answer (the client times out)
	retryAfter string        // Retry-After header, when set
	location   string        // Location header, when set
	delay      time.Duration // wait before answering
}

// request is one request as the server saw it.
type request struct {
	method string
	path   string
	header http.Header
	body   string
}

// server is a webhook receiver that answers with its script, then 200, and keeps every request.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	answers []answer
}

func newServer(t *testing.T, answers ...answer) *server {
	t.Helper()
	s := &server{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, request{r.Method, r.URL.Path, r.Header.Clone(), string(body)})
		a := answer{status: http.StatusOK}
		if len(s.answers) > 0 {
			a, s.answers = s.answers[0], s.answers[1:]
		}
		s.mu.Unlock()
		if a.status == 0 {
			<-r.Context().Done() // the client gave up
			return
		}
		if a.delay > 0 {
			time.Sleep(a.delay)
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		if a.location != "" {
			w.Header().Set("Location", a.location)
		}
		w.WriteHeader(a.status)
	}))
	t.Cleanup(s.Close)
	return s
}

// httpDate is the Retry-After date d from now.
func httpDate(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// TestSender_Post makes one attempt against servers answering in each way a webhook can, and
// checks how the failure is classified: what a retry can fix (408, 429, 5xx, a timeout) is
// transient, with the wait the server asked for; what it cannot (another 4xx, a redirect) is
// permanent. The request itself must be a JSON POST with the sender's headers.
func TestSender_Post(t *testing.T) {
	cases := []struct {
		name       string
		answer     answer
		wantErr    string // "" for success
		status     int
		permanent  bool
		retryAfter [2]time.Duration // the range it must lie in
	}{
		{name: "OK", answer: answer{status: http.StatusOK}},
		{name: "NoContent", answer: answer{status: http.StatusNoContent}},
		{name: "BadRequest", answer: answer{status: 400}, wantErr: "refused: answered 400 Bad Request", status: 400, permanent: true},
		{name: "NotFound", answer: answer{status: 404}, wantErr: "refused: answered 404", status: 404, permanent: true},
		{name: "RequestTimeout", answer: answer{status: 408}, wantErr: "answered 408", status: 408},
		{name: "TooManyRequests", answer: answer{status: 429}, wantErr: "answered 429", status: 429},
		{name: "RetryAfterSeconds", answer: answer{status: 429, retryAfter: "7"}, wantErr: "answered 429", status: 429,
			retryAfter: [2]time.Duration{7 * time.Second, 7 * time.Second}},
		{name: "RetryAfterDate", answer: answer{status: 429, retryAfter: httpDate(90 * time.Second)},
			wantErr: "answered 429", status: 429, retryAfter: [2]time.Duration{85 * time.Second, 90 * time.Second}},
		{name: "RetryAfterPastDate", answer: answer{status: 503, retryAfter: "Mon, 02 Jan 2006 15:04:05 GMT"}, wantErr: "answered 503", status: 503},
		{name: "RetryAfterHuge", answer: answer{status: 503, retryAfter: "99999999999999999"}, wantErr: "answered 503", status: 503,
			retryAfter: [2]time.Duration{24 * time.Hour, 24 * time.Hour}},
		{name: "RetryAfterGarbage", answer: answer{status: 503, retryAfter: "soon"}, wantErr: "answered 503", status: 503},
		{name: "ServerError", answer: answer{status: 500}, wantErr: "answered 500 Internal Server Error", status: 500},
		{name: "BadGateway", answer: answer{status: 502}, wantErr: "answered 502", status: 502},
		{name: "Redirect", answer: answer{status: 302, location: "/elsewhere"}, wantErr: "redirects are not followed", status: 302, permanent: true},
		{name: "PermanentRedirect", answer: answer{status: 308, location: "/elsewhere"}, wantErr: "redirects are not followed", status: 308, permanent: true},
		{name: "Timeout", answer: answer{status: 0}, wantErr: "no answer within 100ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, c.answer)
			s := webhook.Sender{UserAgent: "pgtrail-test"}
			err := s.Post(context.Background(), webhook.Message{URL: srv.URL + "/hook", Body: []byte(`{"a":1}`), ID: "id1",
				Header: map[string]string{"Authorization": "Bearer x", "Content-Type": "text/plain"}, Timeout: 100 * time.Millisecond})
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1 (a redirect must not be followed)", len(reqs))
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.path != "/hook" || r.body != `{"a":1}` || r.header.Get("Content-Type") != "application/json" ||
				r.header.Get("User-Agent") != "pgtrail-test" || r.header.Get(webhook.IDHeader) != "id1" || r.header.Get("Authorization") != "Bearer x" {
				t.Errorf("request %s %s %q with headers %v", r.method, r.path, r.body, r.header)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Post: %v, want success", err)
				}
				return
			}
			var werr *webhook.Error
			if !errors.As(err, &werr) {
				t.Fatalf("Post: %v (%T), want a *webhook.Error", err, err)
			}
			if !strings.Contains(err.Error(), c.wantErr) || werr.Status != c.status || werr.Permanent != c.permanent ||
				webhook.Permanent(err) != c.permanent {
				t.Errorf("Post: %q status %d permanent %v; want %q status %d permanent %v",
					err, werr.Status, werr.Permanent, c.wantErr, c.status, c.permanent)
			}
			if werr.RetryAfter < c.retryAfter[0] || werr.RetryAfter > c.retryAfter[1] {
				t.Errorf("RetryAfter %v, want within [%v, %v]", werr.RetryAfter, c.retryAfter[0], c.retryAfter[1])
			}
		})
	}
}

// TestSender_Post_RedirectRefused: a caller's client that follows redirects (http.Client's
// default) still does not: the redirect's target never sees the alert, in any method, and the
// failure is permanent.
func TestSender_Post_RedirectRefused(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			target := newServer(t)
			srv := newServer(t, answer{status: code, location: target.URL + "/moved"})
			s := webhook.Sender{Client: &http.Client{}}
			err := s.Post(context.Background(), webhook.Message{URL: srv.URL, Body: []byte(`{}`)})
			if !webhook.Permanent(err) {
				t.Errorf("Post after a %d: %v, want a permanent failure", code, err)
			}
			if n := len(target.requests()); n != 0 {
				t.Errorf("the redirect's target got %d requests, want none", n)
			}
		})
	}
}

// TestSender_Post_SecretURL: the URL's token (in the user info, the path or the query) appears
// in no error, whatever went wrong: no server, no answer, an answer, a redirect whose Location
// carries it, a URL that does not parse around it.
func TestSender_Post_SecretURL(t *testing.T) {
	const token = "T0KEN-s3cret"
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		name   string
		url    func(base string) string
		answer answer
	}{
		{"Unreachable", func(string) string { return closed.URL + "/hooks/" + token + "?token=" + token }, answer{}},
		{"UserInfo", func(string) string { return strings.Replace(closed.URL, "//", "//user:"+token+"@", 1) + "/x" }, answer{}},
		{"Timeout", func(b string) string { return b + "/hooks/" + token }, answer{status: 0}},
		{"ServerError", func(b string) string { return b + "/hooks/" + token }, answer{status: 500}},
		{"Refused", func(b string) string { return b + "/hooks/" + token }, answer{status: 403}},
		{"Redirect", func(b string) string { return b + "/hooks/" + token }, answer{status: 302, location: "/moved/" + token}},
		{"BadPort", func(string) string { return "http://127.0.0.1:" + token + "/x" }, answer{}},
		{"BadEscape", func(string) string { return "http://127.0.0.1/%zz" + token }, answer{}},
		{"BadScheme", func(string) string { return "ftp://" + token + "@127.0.0.1/x" }, answer{}},
		{"ControlCharacter", func(string) string { return "http://127.0.0.1/" + token + "\n" }, answer{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, c.answer)
			s := webhook.Sender{}
			err := s.Send(context.Background(), webhook.Message{URL: c.url(srv.URL), Body: []byte(`{}`), Timeout: 100 * time.Millisecond},
				webhook.Policy{Attempts: 1})
			if err == nil {
				t.Fatal("Send succeeded, want a failure")
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("the error shows the URL's secret: %v", err)
			}
		})
	}
}

// TestSender_Send retries what a retry can fix, with the same id on every attempt, up to the
// policy's attempts, and stops at a permanent failure.
func TestSender_Send(t *testing.T) {
	cases := []struct {
		name     string
		answers  []answer
		attempts int
		ok       bool
	}{
		{"FirstTime", nil, 1, true},
		{"ServerErrorThenOK", []answer{{status: 500}, {status: 503}}, 3, true},
		{"RateLimitedThenOK", []answer{{status: 429}}, 2, true},
		{"RequestTimeoutThenOK", []answer{{status: 408}}, 2, true},
		{"TimeoutThenOK", []answer{{status: 0}}, 2, true},
		{"ClientErrorNotRetried", []answer{{status: 400}}, 1, false},
		{"RedirectNotRetried", []answer{{status: 307, location: "/x"}}, 1, false},
		{"GivesUp", []answer{{status: 500}, {status: 500}, {status: 500}, {status: 500}}, 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, c.answers...)
			s := webhook.Sender{}
			err := s.Send(context.Background(), webhook.Message{URL: srv.URL, Body: []byte(`{}`), Timeout: 100 * time.Millisecond},
				webhook.Policy{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
			reqs := srv.requests()
			if (err == nil) != c.ok || len(reqs) != c.attempts {
				t.Fatalf("Send: %v after %d attempts; want ok=%v after %d", err, len(reqs), c.ok, c.attempts)
			}
			for _, r := range reqs {
				if id := r.header.Get(webhook.IDHeader); id == "" || id != reqs[0].header.Get(webhook.IDHeader) {
					t.Errorf("ids %q then %q: want one, the same on every attempt", reqs[0].header.Get(webhook.IDHeader), id)
				}
			}
		})
	}
}

// TestSender_Send_RetryAfter: the wait the server asks for is honoured, in seconds or as a
// date, but never beyond the policy's MaxBackoff.
func TestSender_Send_RetryAfter(t *testing.T) {
	cases := []struct {
		name       string
		retryAfter func() string
		maxBackoff time.Duration
		min, max   time.Duration // how long Send must take
	}{
		{"Seconds", func() string { return "1" }, time.Minute, time.Second, 5 * time.Second},
		// An HTTP date has whole seconds: 3s from now is 2 to 3 seconds away.
		{"Date", func() string { return httpDate(3 * time.Second) }, time.Minute, 1500 * time.Millisecond, 5 * time.Second},
		{"SecondsCapped", func() string { return "3600" }, 50 * time.Millisecond, 0, 2 * time.Second},
		{"DateCapped", func() string { return httpDate(time.Hour) }, 50 * time.Millisecond, 0, 2 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t, answer{status: 429, retryAfter: c.retryAfter()})
			s := webhook.Sender{}
			start := time.Now()
			err := s.Send(context.Background(), webhook.Message{URL: srv.URL, Body: []byte(`{}`)},
				webhook.Policy{Attempts: 2, Backoff: time.Millisecond, MaxBackoff: c.maxBackoff})
			took := time.Since(start)
			if err != nil || len(srv.requests()) != 2 {
				t.Fatalf("Send: %v after %d attempts; want success after 2", err, len(srv.requests()))
			}
			if took < c.min || took > c.max {
				t.Errorf("Send took %v; want within [%v, %v]", took, c.min, c.max)
			}
		})
	}
}

// TestSender_Send_Canceled: a canceled context ends the wait between attempts at once, and the
// error says both why it stopped and what the last attempt got.
func TestSender_Send_Canceled(t *testing.T) {
	srv := newServer(t, answer{status: 503, retryAfter: "3600"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	s := webhook.Sender{}
	start := time.Now()
	err := s.Send(ctx, webhook.Message{URL: srv.URL, Body: []byte(`{}`)}, webhook.Policy{Attempts: 5, Backoff: time.Hour, MaxBackoff: time.Hour})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "answered 503") || time.Since(start) > 5*time.Second {
		t.Errorf("Send: %v after %v; want context.Canceled naming the 503, at once", err, time.Since(start))
	}
}

// TestWait: the backoff, raised to a Retry-After, capped at the limit.
func TestWait(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"PlainError", errors.New("x"), 50 * time.Millisecond, 100 * time.Millisecond},
		{"NoRetryAfter", &webhook.Error{Status: 503, Err: errors.New("x")}, 50 * time.Millisecond, 100 * time.Millisecond},
		{"ShortRetryAfter", &webhook.Error{Status: 503, RetryAfter: time.Millisecond, Err: errors.New("x")}, 50 * time.Millisecond, 100 * time.Millisecond},
		{"RetryAfter", &webhook.Error{Status: 429, RetryAfter: 5 * time.Second, Err: errors.New("x")}, 5 * time.Second, 5 * time.Second},
		{"RetryAfterCapped", &webhook.Error{Status: 429, RetryAfter: time.Hour, Err: errors.New("x")}, time.Minute, time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 50 {
				if d := webhook.Wait(c.err, 100*time.Millisecond, time.Minute, 1); d < c.min || d > c.max {
					t.Fatalf("Wait = %v, want within [%v, %v]", d, c.min, c.max)
				}
			}
		})
	}
}
