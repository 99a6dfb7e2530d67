package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/pgtrail/pgtrail/internal/webhook"
)

// Alert is the JSON a webhook receives when a verification run does not end intact.
type Alert struct {
	// Source is always "pgtrail verify".
	Source  string `json:"source"`
	Scope   string `json:"scope"`
	Archive string `json:"archive,omitempty"`
	// Result is "tampered" (exit code 1) or "could_not_verify" (exit code 2).
	Result   string `json:"result"`
	ExitCode int    `json:"exit_code"`
	Summary  string `json:"summary"`
	Error    string `json:"error,omitempty"`
	// Problems are the first problems of the report; ProblemCount counts them all.
	Problems     []Problem `json:"problems,omitempty"`
	ProblemCount int       `json:"problem_count"`
	Host         string    `json:"host,omitempty"`
	At           time.Time `json:"at"`
}

// alertProblems is how many problems an alert carries.
const alertProblems = 20

// NewAlert describes a run that found problems (rep set) or could not verify (err set).
func NewAlert(scope, archiveURL, host string, rep *Report, err error) Alert {
	a := Alert{Source: "pgtrail verify", Scope: scope, Archive: archiveURL, Host: host, At: time.Now().UTC()}
	if err != nil {
		a.Result, a.ExitCode, a.Error = "could_not_verify", 2, err.Error()
		a.Summary = "pgtrail verify " + scope + " could not verify: " + err.Error()
		return a
	}
	a.Result, a.ExitCode = "tampered", 1
	a.ProblemCount = len(rep.Problems)
	a.Problems = rep.Problems[:min(len(rep.Problems), alertProblems)]
	a.Summary = fmt.Sprintf("pgtrail verify %s: TAMPERING OR GAP DETECTED: %d problem(s)", scope, len(rep.Problems))
	if len(rep.Problems) > 0 {
		p := rep.Problems[0]
		a.Summary += fmt.Sprintf("; first: seq %d %s: %s", p.Seq, p.Kind, p.Detail)
	}
	return a
}

// Webhook delivers alerts by HTTP POST through the shared sender (internal/webhook), with a
// timeout per attempt and retries with exponential backoff for what a retry can fix (network
// errors, timeouts, 408, 429, 5xx; a Retry-After is honoured up to a minute). A 3xx or another
// 4xx is not retried, and a redirect is never followed. Every attempt of one alert carries the
// same X-Pgtrail-Alert-Id header, so that a receiver can drop duplicates. Errors never contain
// the URL, which often holds a secret.
type Webhook struct {
	URL string
	// Timeout bounds each attempt; 0 means 10 seconds.
	Timeout time.Duration
	// Retries is how many times a failed delivery is tried again; 0 means 3, negative none.
	Retries int
	// Backoff is the wait before the first retry, doubled each time up to a minute (with
	// jitter: half to all of it); 0 means 1 second.
	Backoff time.Duration
	// Client sends the requests; nil means one with http.DefaultTransport. Redirects are not
	// followed whatever its CheckRedirect.
	Client *http.Client
}

// Send posts a to the webhook. It returns nil once a 2xx answer came, else the last attempt's
// error; it gives up early when ctx ends.
func (w *Webhook) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	p := webhook.Policy{Attempts: w.Retries + 1, Backoff: w.Backoff, MaxBackoff: time.Minute}
	switch {
	case w.Retries == 0:
		p.Attempts = 4
	case w.Retries < 0:
		p.Attempts = 1
	}
	if p.Backoff <= 0 {
		p.Backoff = time.Second
	}
	s := webhook.Sender{Client: w.Client, UserAgent: "pgtrail-verify"}
	if err := s.Send(ctx, webhook.Message{URL: w.URL, Body: body, Timeout: w.Timeout}, p); err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	return nil
}
