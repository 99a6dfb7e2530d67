package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/pgtrail/pgtrail/internal/backoff"
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

// Webhook delivers alerts by HTTP POST, with a timeout per attempt and retries with exponential
// backoff for what a retry can fix (network errors, 5xx, 429). Every attempt of one alert
// carries the same X-Pgtrail-Alert-Id header, so that a receiver can drop duplicates. Errors
// never contain the URL, which often holds a secret.
type Webhook struct {
	URL string
	// Timeout bounds each attempt; 0 means 10 seconds.
	Timeout time.Duration
	// Retries is how many times a failed delivery is tried again; 0 means 3, negative none.
	Retries int
	// Backoff is the wait before the first retry, doubled each time up to a minute (with
	// jitter: half to all of it); 0 means 1 second.
	Backoff time.Duration
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
}

// errPermanent marks an answer that a retry will not change.
var errPermanent = errors.New("permanent")

// Send posts a to the webhook. It returns nil once a 2xx answer came, else the last attempt's
// error; it gives up early when ctx ends.
func (w *Webhook) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	var id [16]byte
	rand.Read(id[:])
	timeout, first, retries := w.Timeout, w.Backoff, w.Retries
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if first <= 0 {
		first = time.Second
	}
	if retries == 0 {
		retries = 3
	}
	for attempt := 0; ; attempt++ {
		err = w.post(ctx, body, hex.EncodeToString(id[:]), timeout)
		if err == nil || errors.Is(err, errPermanent) || attempt >= retries {
			break
		}
		if !backoff.Sleep(ctx, backoff.Delay(first, time.Minute, attempt+1)) {
			return fmt.Errorf("alert webhook: %w (after %v)", ctx.Err(), err)
		}
	}
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	return nil
}

func (w *Webhook) post(ctx context.Context, body []byte, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: bad URL", errPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pgtrail-verify")
	req.Header.Set("X-Pgtrail-Alert-Id", id)
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// Webhook URLs often carry a secret token: keep the URL out of the error.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return uerr.Err
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("answered %s", resp.Status)
	default:
		return fmt.Errorf("%w: answered %s", errPermanent, resp.Status)
	}
}
