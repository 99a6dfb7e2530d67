// Package webhook is pgtrail's one way to deliver a JSON document by HTTP POST: the alerts of
// `pgtrail verify --alert-webhook` and those of the stream's alert rules. It decides what a
// failed attempt means (worth a retry or not, after how long) so that every caller retries the
// same way; there were two senders once, and they drifted.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail/internal/backoff"
)

// DefaultTimeout bounds an attempt whose Message has no Timeout.
const DefaultTimeout = 10 * time.Second

// IDHeader carries Message.ID, the same on every attempt, so that a receiver can drop the
// duplicates a retry after a lost answer creates.
const IDHeader = "X-Pgtrail-Alert-Id"

// maxRetryAfter only keeps a huge Retry-After from overflowing a time.Duration; the wait is
// capped much lower by the caller's maximum backoff (see Wait).
const maxRetryAfter = 24 * time.Hour

// Message is one JSON document for one endpoint.
type Message struct {
	// URL, http or https. It often carries a secret (chat webhooks put their token in the path
	// or the query): no error of this package contains it, or any part of it.
	URL string
	// Body is sent as is, with Content-Type application/json.
	Body []byte
	// ID is sent in IDHeader; Send replaces an empty one with a random one.
	ID string
	// Header holds extra request headers. Content-Type, User-Agent and IDHeader are the
	// sender's: a value given here for them is replaced.
	Header map[string]string
	// Timeout bounds each attempt; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Policy is how Send retries.
type Policy struct {
	// Attempts is how many times a message is tried at most; less than 1 means 1.
	Attempts int
	// Backoff is the wait before the first retry, doubled each time up to MaxBackoff, with
	// jitter (backoff.Delay). MaxBackoff also caps a wait asked for with Retry-After.
	Backoff, MaxBackoff time.Duration
}

// Sender posts messages. The zero value is ready to use.
type Sender struct {
	// Client sends the requests; nil means one with http.DefaultTransport. Whatever its
	// CheckRedirect, redirects are not followed (see Post).
	Client *http.Client
	// UserAgent names the caller to the receiver, e.g. "pgtrail-verify".
	UserAgent string
}

// Error is a failed attempt. Its text never contains the message's URL.
type Error struct {
	// Status is the answer's HTTP status code, 0 when no answer came.
	Status int
	// Permanent: trying again cannot change the outcome (a refusal, a redirect, a bad URL).
	Permanent bool
	// RetryAfter is the wait the endpoint asked for with Retry-After, 0 when it did not.
	RetryAfter time.Duration
	// Err says what went wrong.
	Err error
}

// Error says what went wrong, without the URL.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap gives errors.Is a context.DeadlineExceeded or context.Canceled to find.
func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether err is an attempt's failure that a retry cannot fix.
func Permanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// Wait is how long to wait before retry number attempt (1 for the first) after err: the
// exponential backoff from first to limit, or longer when the endpoint asked for it with
// Retry-After, but never more than limit — an endpoint must not be able to stall delivery (and
// Stop) for as long as it likes.
func Wait(err error, first, limit time.Duration, attempt int) time.Duration {
	d := backoff.Delay(first, limit, attempt)
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > d {
		d = min(e.RetryAfter, limit)
	}
	return d
}

// Send posts m until an attempt succeeds, one fails permanently or p.Attempts were made, waiting
// Wait between attempts. It returns nil, or the last attempt's error; if ctx ends while it
// waits, an error wrapping ctx.Err() that names the last attempt's error.
func (s *Sender) Send(ctx context.Context, m Message, p Policy) error {
	if m.ID == "" {
		m.ID = NewID()
	}
	for attempt := 1; ; attempt++ {
		err := s.Post(ctx, m)
		if err == nil || Permanent(err) || attempt >= p.Attempts {
			return err
		}
		if !backoff.Sleep(ctx, Wait(err, p.Backoff, p.MaxBackoff, attempt)) {
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		}
	}
}

// NewID returns a random message id.
func NewID() string {
	var id [16]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// Post makes one attempt to deliver m; nil means a 2xx answer. A failure is an *Error:
// permanent for a 3xx, a 4xx other than 408 and 429, or a URL that cannot be posted to;
// transient for 408, 429, 5xx, a network error or the timeout.
//
// A redirect is never followed, whatever s.Client would do: for a 301, 302 or 303 the client
// would turn the POST into a GET, whose 200 would count an alert as delivered that nobody
// received; a 307 or 308 would send the alert to a place nobody configured.
func (s *Sender) Post(ctx context.Context, m Message) error {
	// The strictest of the old rules for the URL: not even the parser's complaint, which can
	// quote part of the URL (an "invalid port" that is a token).
	if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{Permanent: true, Err: errors.New("invalid URL: want http:// or https://")}
	}
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return &Error{Permanent: true, Err: errors.New("invalid URL")}
	}
	for k, v := range m.Header {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.UserAgent)
	if m.ID != "" {
		req.Header.Set(IDHeader, m.ID)
	}
	client := http.Client{}
	if s.Client != nil {
		client = *s.Client
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v: %w", timeout, context.DeadlineExceeded)
		}
		return &Error{Err: fmt.Errorf("post: %w", stripURL(err))}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		// Not the Location: it may carry a secret too.
		return &Error{Status: code, Permanent: true, Err: fmt.Errorf("answered %s: redirects are not followed", resp.Status)}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return &Error{Status: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			Err: fmt.Errorf("answered %s", resp.Status)}
	default:
		return &Error{Status: code, Permanent: true, Err: fmt.Errorf("refused: answered %s", resp.Status)}
	}
}

// retryAfter reads a Retry-After value, delay-seconds or an HTTP date; 0 when there is none,
// it is in the past or cannot be read.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// stripURL keeps what went wrong and drops the URL that net/http puts in its errors.
func stripURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
