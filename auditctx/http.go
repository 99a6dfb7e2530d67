package auditctx

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"
)

// RequestIDHeader carries the request id in both directions: Middleware reads it from the request
// and sets it on the response.
const RequestIDHeader = "X-Request-Id"

// The forwarding headers MiddlewareConfig.ProxyHeader may name.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded" // RFC 7239
)

const (
	// maxRequestID bounds an incoming request id; a longer one is replaced.
	maxRequestID = 128
	// maxUserAgent bounds the User-Agent kept in the trail; a longer one is cut.
	maxUserAgent = 512
)

// requestIDPattern is what an incoming request id may contain: UUIDs, hex, base64 and the
// usual tracing formats, nothing that could pass for markup or a log line break.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:+/=@-]+$`)

// nodeNamePattern accepts what a trusted proxy may write for a client that has no address to
// give: RFC 7239's "unknown" and obfuscated identifiers like "_hidden", or an address in a form
// netip does not parse.
var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]{1,64}$`)

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Actor returns the authenticated user's id and tenant for r, empty for an anonymous request;
	// nil makes every request anonymous. It runs inside the middleware, so an authentication
	// middleware that puts the user in r's context must wrap Middleware, not be wrapped by it.
	Actor func(r *http.Request) (id, tenant string)

	// TrustedProxies lists the reverse proxies whose forwarding header is believed, as CIDRs
	// ("10.0.0.0/8") or single addresses. Empty: the client IP is always the peer's address
	// (RemoteAddr), and forwarding headers are ignored.
	TrustedProxies []string

	// ProxyHeader names the one forwarding header the trusted proxies write: HeaderXForwardedFor
	// (the default) or HeaderForwarded. The other is never read, because a proxy that does not
	// write it passes on whatever the client put there.
	ProxyHeader string
}

// Validate reports the first invalid field of c.
func (c MiddlewareConfig) Validate() error {
	_, _, err := c.parse()
	return err
}

func (c MiddlewareConfig) parse() (trusted []netip.Prefix, header string, err error) {
	for i, s := range c.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, "", fmt.Errorf("TrustedProxies[%d]: %w", i, err)
		}
		trusted = append(trusted, p)
	}
	switch header = http.CanonicalHeaderKey(c.ProxyHeader); header {
	case "":
		header = HeaderXForwardedFor
	case HeaderXForwardedFor, HeaderForwarded:
	default:
		return nil, "", fmt.Errorf("ProxyHeader: %q is neither %s nor %s", c.ProxyHeader, HeaderXForwardedFor, HeaderForwarded)
	}
	return trusted, header, nil
}

// parsePrefix parses a CIDR or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped networks in IPv4 form", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Middleware returns net/http middleware that puts an Actor in each request's context (see With)
// for the handlers it wraps:
//
//   - ID and TenantID from cfg.Actor;
//   - IP from RemoteAddr, or, when RemoteAddr is one of cfg.TrustedProxies, from the forwarding
//     header, walked from the right: the first address that is not a trusted proxy is the
//     client's. Headers from peers that are not trusted proxies are ignored, so a client cannot
//     choose the IP it is recorded with;
//   - UserAgent from User-Agent, cut to 512 bytes;
//   - RequestID from X-Request-Id when the request has exactly one of at most 128 characters of
//     [A-Za-z0-9._:+/=@-], else a new random UUID. The id is set on the response too. A client
//     can choose its request id: it correlates logs, it proves nothing.
//
// It returns an error, naming the field, when cfg is invalid.
func Middleware(cfg MiddlewareConfig) (func(http.Handler) http.Handler, error) {
	trusted, header, err := cfg.parse()
	if err != nil {
		return nil, fmt.Errorf("audit middleware: %w", err)
	}
	m := &middleware{actor: cfg.Actor, trusted: trusted, header: header}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := Actor{
				IP:        m.clientIP(r),
				UserAgent: truncate(r.UserAgent(), maxUserAgent),
				RequestID: requestID(r),
			}
			if m.actor != nil {
				a.ID, a.TenantID = m.actor(r)
			}
			w.Header().Set(RequestIDHeader, a.RequestID)
			next.ServeHTTP(w, r.WithContext(With(r.Context(), a)))
		})
	}, nil
}

type middleware struct {
	actor   func(*http.Request) (string, string)
	trusted []netip.Prefix
	header  string
}

func (m *middleware) isTrusted(a netip.Addr) bool {
	for _, p := range m.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the client's address, or "" when RemoteAddr is not an IP address (a unix
// socket, for instance).
func (m *middleware) clientIP(r *http.Request) string {
	peer, ok := parseHost(r.RemoteAddr)
	if !ok {
		return ""
	}
	if !m.isTrusted(peer) {
		return peer.String()
	}
	var hops []string
	if m.header == HeaderForwarded {
		hops = forwardedFor(r.Header.Values(HeaderForwarded))
	} else {
		hops = xForwardedFor(r.Header.Values(HeaderXForwardedFor))
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHost(hops[i])
		if !ok {
			// Written by a trusted proxy (every hop to its right is one), so it is the proxy's
			// word for a client without a usable address; kept as text if it looks like one.
			if nodeNamePattern.MatchString(hops[i]) {
				return hops[i]
			}
			return "unknown"
		}
		client = a
		if !m.isTrusted(a) {
			break
		}
	}
	return client.String()
}

// parseHost parses an address with or without a port, IPv6 with or without brackets, and
// returns IPv4-mapped addresses in IPv4 form, without zone.
func parseHost(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr == nil {
			a, err = ap.Addr(), nil
		} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
		}
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// xForwardedFor returns the hops of X-Forwarded-For header lines, left to right.
func xForwardedFor(lines []string) []string {
	var hops []string
	for _, line := range lines {
		for h := range strings.SplitSeq(line, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	return hops
}

// forwardedFor returns the for= node of each element of RFC 7239 Forwarded header lines, left to
// right; an element without one counts as an unknown hop.
func forwardedFor(lines []string) []string {
	var hops []string
	for _, line := range lines {
		for _, elem := range splitQuoted(line, ',') {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			node := "unknown"
			for _, pair := range splitQuoted(elem, ';') {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					node = unquote(strings.TrimSpace(v))
					break
				}
			}
			hops = append(hops, node)
		}
	}
	return hops
}

// splitQuoted splits s at sep outside quoted strings.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote returns the content of an RFC 7230 quoted-string, or s if it is not one.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// requestID returns the request's id if it has exactly one acceptable one, else a new one.
func requestID(r *http.Request) string {
	ids := r.Header.Values(RequestIDHeader)
	if len(ids) == 1 && len(ids[0]) <= maxRequestID && requestIDPattern.MatchString(ids[0]) {
		return ids[0]
	}
	return NewRequestID()
}

// NewRequestID returns a random (version 4) UUID in its usual text form.
func NewRequestID() string {
	var u [16]byte
	rand.Read(u[:]) // never fails: see crypto/rand.Read
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
