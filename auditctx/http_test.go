package auditctx_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgtrail/pgtrail/auditctx"
)

// serve runs r through Middleware(cfg) and returns the Actor the handler saw and the response.
func serve(t *testing.T, cfg auditctx.MiddlewareConfig, r *http.Request) (auditctx.Actor, *http.Response) {
	t.Helper()
	mw, err := auditctx.Middleware(cfg)
	if err != nil {
		t.Fatalf("Middleware: %v", err)
	}
	var got auditctx.Actor
	var ok bool
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok = auditctx.From(r.Context())
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if !ok {
		t.Fatal("the handler's context carries no Actor")
	}
	return got, rec.Result()
}

func TestMiddleware_ClientIP(t *testing.T) {
	proxies := []string{"10.0.0.0/8", "192.168.1.1"}
	tests := []struct {
		name    string
		trusted []string
		header  string // ProxyHeader
		remote  string
		xff     []string
		fwd     []string
		want    string
	}{
		{name: "PeerWithoutProxies", remote: "203.0.113.7:5000", want: "203.0.113.7"},
		{name: "IPv6Peer", remote: "[2001:db8::1]:443", want: "2001:db8::1"},
		{name: "IPv4MappedPeer", remote: "[::ffff:203.0.113.7]:443", want: "203.0.113.7"},
		{name: "UnixSocketPeer", remote: "@", want: ""},
		// A client that sends forwarding headers straight to the service must not choose its IP.
		{name: "SpoofedXFFWithoutProxies", remote: "203.0.113.7:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "SpoofedXFFFromUntrustedPeer", trusted: proxies, remote: "203.0.113.7:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "SpoofedForwardedFromUntrustedPeer", trusted: proxies, header: auditctx.HeaderForwarded, remote: "203.0.113.7:5000", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},
		{name: "TrustedProxyXFF", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "TrustedSingleAddress", trusted: proxies, remote: "192.168.1.1:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "TrustedIPv4MappedPeer", trusted: proxies, remote: "[::ffff:10.0.0.2]:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		// The client put 1.1.1.1 in front; the proxies appended the real client and an inner proxy.
		{name: "SpoofedHopBeforeClient", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"1.1.1.1, 198.51.100.1, 10.0.0.3"}, want: "198.51.100.1"},
		{name: "SeveralHeaderLines", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"1.1.1.1", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "EveryHopTrusted", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"10.1.1.1, 10.0.0.3"}, want: "10.1.1.1"},
		{name: "NoHeaderFromTrustedProxy", trusted: proxies, remote: "10.0.0.2:5000", want: "10.0.0.2"},
		{name: "HopWithPort", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"198.51.100.1:4711"}, want: "198.51.100.1"},
		{name: "EmptyHopsSkipped", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{" , 198.51.100.1 ,"}, want: "198.51.100.1"},
		{name: "GarbageHop", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"<script>, 10.0.0.3"}, want: "unknown"},
		{name: "GarbageBeforeClientIgnored", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"<script>, 198.51.100.1"}, want: "198.51.100.1"},
		// The proxy writes one header; the client's copy of the other must not be read.
		{name: "XFFConfiguredForwardedSpoofed", trusted: proxies, remote: "10.0.0.2:5000", xff: []string{"198.51.100.1"}, fwd: []string{"for=1.1.1.1"}, want: "198.51.100.1"},
		{name: "ForwardedConfiguredXFFSpoofed", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", xff: []string{"1.1.1.1"}, fwd: []string{"for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "Forwarded", trusted: proxies, header: "forwarded", remote: "10.0.0.2:5000", fwd: []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, want: "192.0.2.60"},
		{name: "ForwardedQuotedIPv6WithPort", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{`For="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "ForwardedQuotedIPv6", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{`for="[2001:db8:cafe::17]"`}, want: "2001:db8:cafe::17"},
		{name: "ForwardedElements", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{`for=1.1.1.1, for=198.51.100.1;proto=https, for=10.0.0.3`}, want: "198.51.100.1"},
		{name: "ForwardedQuotedComma", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{`for=198.51.100.1;ext="a,b", for=10.0.0.3`}, want: "198.51.100.1"},
		{name: "ForwardedUnknown", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{"for=unknown"}, want: "unknown"},
		{name: "ForwardedObfuscated", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{"for=_hidden"}, want: "_hidden"},
		{name: "ForwardedWithoutFor", trusted: proxies, header: auditctx.HeaderForwarded, remote: "10.0.0.2:5000", fwd: []string{"proto=https"}, want: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.fwd {
				r.Header.Add("Forwarded", v)
			}
			a, _ := serve(t, auditctx.MiddlewareConfig{TrustedProxies: tt.trusted, ProxyHeader: tt.header}, r)
			if a.IP != tt.want {
				t.Errorf("peer %s, X-Forwarded-For %q, Forwarded %q: IP = %q, want %q", tt.remote, tt.xff, tt.fwd, a.IP, tt.want)
			}
		})
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestMiddleware_RequestID(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		keep bool
	}{
		{name: "Missing", keep: false},
		{name: "UUID", in: []string{"6f1c2b1e-3d4f-4a5b-8c6d-7e8f9a0b1c2d"}, keep: true},
		{name: "TracingFormat", in: []string{"Root=1-67891233-abcdef012345678912345678"}, keep: true},
		{name: "Base64", in: []string{"q83vEjRWeJA+/w=="}, keep: true},
		{name: "LongestAccepted", in: []string{strings.Repeat("a", 128)}, keep: true},
		{name: "Oversize", in: []string{strings.Repeat("a", 129)}, keep: false},
		{name: "Empty", in: []string{""}, keep: false},
		{name: "Space", in: []string{"abc def"}, keep: false},
		{name: "Markup", in: []string{"<script>alert(1)</script>"}, keep: false},
		{name: "NonASCII", in: []string{"abc\u00e9"}, keep: false},
		{name: "LogInjection", in: []string{"abc\r\nlevel=error"}, keep: false},
		{name: "TwoHeaders", in: []string{"abc", "def"}, keep: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, v := range tt.in {
				r.Header.Add(auditctx.RequestIDHeader, v)
			}
			a, resp := serve(t, auditctx.MiddlewareConfig{}, r)
			if tt.keep && a.RequestID != tt.in[0] {
				t.Errorf("request id %q was replaced by %q; it must be kept", tt.in[0], a.RequestID)
			}
			if !tt.keep && !uuidV4.MatchString(a.RequestID) {
				t.Errorf("request id %q became %q; want a newly generated UUID", tt.in, a.RequestID)
			}
			if echoed := resp.Header.Get(auditctx.RequestIDHeader); echoed != a.RequestID {
				t.Errorf("response %s = %q, want the request's id %q", auditctx.RequestIDHeader, echoed, a.RequestID)
			}
		})
	}
}

func TestMiddleware_Actor(t *testing.T) {
	type userKey struct{}
	// An authentication middleware wraps the audit middleware and leaves the user in the context.
	identify := func(r *http.Request) (string, string) {
		u, _ := r.Context().Value(userKey{}).(string)
		if u == "" {
			return "", ""
		}
		return u, "tenant-" + u
	}
	long := strings.Repeat("a", 511) + "\u00e9" // the é straddles byte 512
	tests := []struct {
		name      string
		identify  func(*http.Request) (string, string)
		user      string
		userAgent string
		want      auditctx.Actor
	}{
		{name: "Authenticated", identify: identify, user: "alice", userAgent: "curl/8.5", want: auditctx.Actor{ID: "alice", TenantID: "tenant-alice", UserAgent: "curl/8.5"}},
		{name: "Anonymous", identify: identify, userAgent: "curl/8.5", want: auditctx.Actor{UserAgent: "curl/8.5"}},
		{name: "NoActorFunc", user: "alice", want: auditctx.Actor{}},
		{name: "LongUserAgent", userAgent: long, want: auditctx.Actor{UserAgent: long[:511]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = "203.0.113.7:5000"
			r.Header.Set("User-Agent", tt.userAgent)
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, tt.user))
			a, _ := serve(t, auditctx.MiddlewareConfig{Actor: tt.identify}, r)
			tt.want.IP, tt.want.RequestID = "203.0.113.7", a.RequestID
			if a != tt.want {
				t.Errorf("Actor = %+v, want %+v", a, tt.want)
			}
			if !utf8.ValidString(a.UserAgent) {
				t.Errorf("user agent %q is not valid UTF-8 after cutting", a.UserAgent)
			}
		})
	}
}

func TestMiddlewareConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     auditctx.MiddlewareConfig
		wantErr string // substring; empty means valid
	}{
		{name: "Zero", cfg: auditctx.MiddlewareConfig{}},
		{name: "CIDRsAndAddresses", cfg: auditctx.MiddlewareConfig{TrustedProxies: []string{"10.0.0.0/8", " 192.168.1.1 ", "fd00::/8", "::1"}}},
		{name: "Forwarded", cfg: auditctx.MiddlewareConfig{ProxyHeader: "forwarded"}},
		{name: "BadCIDR", cfg: auditctx.MiddlewareConfig{TrustedProxies: []string{"10.0.0.0/8", "10.0.0.0/33"}}, wantErr: "TrustedProxies[1]"},
		{name: "Hostname", cfg: auditctx.MiddlewareConfig{TrustedProxies: []string{"proxy.internal"}}, wantErr: "TrustedProxies[0]"},
		{name: "MappedCIDR", cfg: auditctx.MiddlewareConfig{TrustedProxies: []string{"::ffff:10.0.0.0/104"}}, wantErr: "TrustedProxies[0]"},
		{name: "OtherHeader", cfg: auditctx.MiddlewareConfig{ProxyHeader: "X-Real-IP"}, wantErr: "ProxyHeader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := auditctx.Middleware(tt.cfg); err != nil {
					t.Fatalf("Middleware: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantErr)
			}
			if _, err := auditctx.Middleware(tt.cfg); err == nil {
				t.Fatal("Middleware accepted a config Validate refuses")
			}
		})
	}
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := auditctx.NewRequestID()
		if !uuidV4.MatchString(id) {
			t.Fatalf("NewRequestID = %q, want a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewRequestID repeated %q", id)
		}
		seen[id] = true
	}
}

func TestWith_From(t *testing.T) {
	if a, ok := auditctx.From(context.Background()); ok {
		t.Fatalf("From(Background) = %+v, true; want no Actor", a)
	}
	want := auditctx.Actor{ID: "alice", IP: "203.0.113.7", UserAgent: "ua", RequestID: "r1", TenantID: "t1"}
	ctx := auditctx.With(context.Background(), want)
	if got, ok := auditctx.From(ctx); !ok || got != want {
		t.Fatalf("From(With(a)) = %+v, %v; want %+v, true", got, ok, want)
	}
	// An inner With replaces the Actor for the inner context only.
	inner := auditctx.With(ctx, auditctx.Actor{ID: "bob"})
	if got, _ := auditctx.From(inner); got.ID != "bob" {
		t.Errorf("inner actor = %q, want bob", got.ID)
	}
	if got, _ := auditctx.From(ctx); got.ID != "alice" {
		t.Errorf("outer actor = %q after an inner With, want alice", got.ID)
	}
}
