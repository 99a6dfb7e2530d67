package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/examples/payments-api/service"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// env is the API on a fresh database, run as an application role that may use the demo tables
// and nothing else, over a pool of two connections.
type env struct {
	admin   *pgxpool.Pool
	appUser string
	handler http.Handler
}

func setup(t *testing.T, trustedProxies ...string) *env {
	t.Helper()
	admin, url := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := service.Setup(ctx, admin); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	// A restarted service runs Setup again: it must not fail on what it created.
	if err := service.Setup(ctx, admin); err != nil {
		t.Fatalf("Setup again: %v", err)
	}

	e := &env{admin: admin, appUser: "app_" + randomHex(6)}
	role, password := pgx.Identifier{e.appUser}.Sanitize(), randomHex(16)
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'",
		"GRANT SELECT, INSERT, UPDATE ON public.users, public.payments TO " + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Registered before the application pool, so it runs after the pool is closed.
	t.Cleanup(func() {
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := admin.Exec(context.Background(), q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = e.appUser, password
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("app pool: %v", err)
	}
	t.Cleanup(pool.Close)
	e.handler, err = service.New(service.Config{Pool: pool, TrustedProxies: trustedProxies})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// request is one HTTP request to the API.
type request struct {
	method, path string
	token        string // bearer token; empty: none
	body         any
	remote       string // RemoteAddr; default 203.0.113.10:40000
	requestID    string
	xff          string
}

// do serves req and returns the status and decoded JSON body.
func (e *env) do(t *testing.T, req request) (int, map[string]any) {
	t.Helper()
	var body strings.Builder
	if req.body != nil {
		json.NewEncoder(&body).Encode(req.body)
	}
	r := httptest.NewRequest(req.method, req.path, strings.NewReader(body.String()))
	r.RemoteAddr = req.remote
	if r.RemoteAddr == "" {
		r.RemoteAddr = "203.0.113.10:40000"
	}
	r.Header.Set("User-Agent", "payments-test/1.0")
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.requestID != "" {
		r.Header.Set("X-Request-Id", req.requestID)
	}
	if req.xff != "" {
		r.Header.Set("X-Forwarded-For", req.xff)
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, r)
	if req.requestID != "" && rec.Header().Get("X-Request-Id") != req.requestID {
		t.Errorf("%s %s: response X-Request-Id = %q, want %q", req.method, req.path, rec.Header().Get("X-Request-Id"), req.requestID)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: status %d, body %q is not JSON: %v", req.method, req.path, rec.Code, rec.Body, err)
	}
	return rec.Code, out
}

// mustDo serves req and fails the test unless it answers want.
func (e *env) mustDo(t *testing.T, req request, want int) map[string]any {
	t.Helper()
	code, out := e.do(t, req)
	if code != want {
		t.Fatalf("%s %s: status %d %v, want %d", req.method, req.path, code, out, want)
	}
	return out
}

// entry is an audit entry as the tests read it; NULLs read as "NULL".
type entry struct {
	Action, ResourceType, ResourceID, Outcome, ActorID, ActorIP, UserAgent, RequestID, TenantID, DBUser string
	Changed                                                                                             []string
	After, Details                                                                                      map[string]any
}

// events seals the trail and returns the entries about the demo (not the setup's), in chain order.
func (e *env) events(t *testing.T) []entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testdb.Seal(t, e.admin)
	rows, err := e.admin.Query(ctx, `
		SELECT action_type, resource_type, coalesce(resource_id, 'NULL'), outcome, actor_id,
		       coalesce(host(actor_ip), 'NULL'), coalesce(actor_user_agent, 'NULL'), coalesce(request_id, 'NULL'),
		       coalesce(tenant_id, 'NULL'), db_user, changed_columns, after_state, details
		  FROM audit.events WHERE action_type NOT IN ('DDL', 'AUDIT_ENABLE', 'AUDIT_CONFIG') ORDER BY seq`)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
		var x entry
		err := r.Scan(&x.Action, &x.ResourceType, &x.ResourceID, &x.Outcome, &x.ActorID, &x.ActorIP, &x.UserAgent,
			&x.RequestID, &x.TenantID, &x.DBUser, &x.Changed, &x.After, &x.Details)
		return x, err
	})
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return out
}

func (x entry) String() string {
	return fmt.Sprintf("%s %s/%s %s by %s ip %s ua %s request %s tenant %s", x.Action, x.ResourceType, x.ResourceID,
		x.Outcome, x.ActorID, x.ActorIP, x.UserAgent, x.RequestID, x.TenantID)
}

// TestAPI_FullPath drives every route once and checks that each audited write and event carries
// the actor, IP, user agent and request id of the request behind it.
func TestAPI_FullPath(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.mustDo(t, request{method: "POST", path: "/login", body: map[string]string{"user": "alice", "password": "alice-password"}, requestID: "req-login"}, 200)
	e.mustDo(t, request{method: "POST", path: "/login", body: map[string]string{"user": "alice", "password": "guess"}, requestID: "req-failed", remote: "198.51.100.66:5000"}, 401)
	user := e.mustDo(t, request{method: "POST", path: "/users", token: "alice-token", body: map[string]string{"name": "Carol", "email": "carol@example.com"}, requestID: "req-user"}, 201)
	uid := strconv.FormatInt(int64(user["id"].(float64)), 10)
	got := e.mustDo(t, request{method: "GET", path: "/users/" + uid, token: "alice-token", requestID: "req-view"}, 200)
	if got["email"] != "carol@example.com" {
		t.Errorf("GET /users/%s = %v", uid, got)
	}
	pay := e.mustDo(t, request{method: "POST", path: "/payments", token: "alice-token", body: map[string]any{"user_id": user["id"], "amount_cents": 1250, "currency": "EUR"}, requestID: "req-pay"}, 201)
	pid := strconv.FormatInt(int64(pay["id"].(float64)), 10)
	e.mustDo(t, request{method: "POST", path: "/payments/" + pid + "/refund", token: "alice-token", requestID: "req-refund"}, 200)
	export := e.mustDo(t, request{method: "GET", path: "/payments/export", token: "alice-token", requestID: "req-export"}, 200)
	if n := len(export["payments"].([]any)); n != 1 {
		t.Errorf("export returned %d payments, want 1", n)
	}

	events := e.events(t)
	type want struct{ action, resourceType, resourceID, outcome, actor, ip, request, tenant string }
	wants := []want{
		{"LOGIN", "session", "alice", "SUCCESS", "alice", "203.0.113.10", "req-login", "acme"},
		// Nobody is authenticated on a failed login: the actor is the database user.
		{"FAILED_LOGIN", "session", "NULL", "FAILURE", e.appUser, "198.51.100.66", "req-failed", "NULL"},
		{"CREATE", "public.users", uid, "SUCCESS", "alice", "203.0.113.10", "req-user", "acme"},
		{"VIEW_PII", "public.users", uid, "SUCCESS", "alice", "203.0.113.10", "req-view", "acme"},
		{"CREATE", "public.payments", pid, "SUCCESS", "alice", "203.0.113.10", "req-pay", "acme"},
		{"UPDATE", "public.payments", pid, "SUCCESS", "alice", "203.0.113.10", "req-refund", "acme"},
		{"EXPORT", "public.payments", "NULL", "SUCCESS", "alice", "203.0.113.10", "req-export", "acme"},
	}
	if len(events) != len(wants) {
		t.Fatalf("%d entries, want %d: %v", len(events), len(wants), events)
	}
	for i, w := range wants {
		x := events[i]
		if x.Action != w.action || x.ResourceType != w.resourceType || x.ResourceID != w.resourceID || x.Outcome != w.outcome ||
			x.ActorID != w.actor || x.ActorIP != w.ip || x.RequestID != w.request || x.TenantID != w.tenant ||
			x.UserAgent != "payments-test/1.0" || x.DBUser != e.appUser {
			t.Errorf("entry %d = %v (db user %s), want %+v", i, x, x.DBUser, w)
		}
	}
	if d := events[1].Details; d["user"] != "alice" {
		t.Errorf("FAILED_LOGIN details = %v, want the user that was tried", d)
	}
	if c := events[5].Changed; len(c) != 1 || c[0] != "status" {
		t.Errorf("refund changed columns = %v, want [status]", c)
	}
	if d := events[6].Details; d["rows"] != float64(1) {
		t.Errorf("EXPORT details = %v, want rows 1", d)
	}
}

// TestAPI_ConcurrentActors sends requests of alice, bob and anonymous clients at once through a
// pool of two connections: every entry must carry the actor, tenant and request id of its own
// request, never another's.
func TestAPI_ConcurrentActors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	users := map[string]any{}
	for _, tok := range []string{"alice-token", "bob-token"} {
		u := e.mustDo(t, request{method: "POST", path: "/users", token: tok, body: map[string]string{"name": tok, "email": tok + "@example.com"}}, 201)
		users[tok] = u["id"]
	}
	const clients, requests = 12, 15
	type sent struct{ actor, tenant string }
	var mu sync.Mutex
	want := map[string]sent{} // request id -> who sent it
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range requests {
				reqID := fmt.Sprintf("c%d-r%d", c, i)
				r := request{requestID: reqID, remote: fmt.Sprintf("198.51.100.%d:5000", c+1)}
				var who sent
				var status int
				switch c % 3 {
				case 0:
					r.method, r.path, r.token = "POST", "/payments", "alice-token"
					r.body = map[string]any{"user_id": users["alice-token"], "amount_cents": 100 + i, "currency": "EUR"}
					who, status = sent{"alice", "acme"}, 201
				case 1:
					r.method, r.path, r.token = "POST", "/payments", "bob-token"
					r.body = map[string]any{"user_id": users["bob-token"], "amount_cents": 100 + i, "currency": "USD"}
					who, status = sent{"bob", "globex"}, 201
				default:
					r.method, r.path = "POST", "/login"
					r.body = map[string]string{"user": "mallory", "password": "guess"}
					who, status = sent{e.appUser, "NULL"}, 401
				}
				if code, out := e.do(t, r); code != status {
					t.Errorf("client %d request %d: status %d %v, want %d", c, i, code, out, status)
					return
				}
				mu.Lock()
				want[reqID] = who
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n := 0
	for _, x := range e.events(t) {
		w, ok := want[x.RequestID]
		if !ok {
			continue // the setup's users
		}
		n++
		if x.ActorID != w.actor || x.TenantID != w.tenant {
			t.Errorf("%v: sent by %s of %s", x, w.actor, w.tenant)
		}
		if x.Action == "CREATE" && x.After["tenant_id"] != w.tenant {
			t.Errorf("%v: wrote a payment of tenant %v", x, x.After["tenant_id"])
		}
	}
	if n != clients*requests {
		t.Errorf("%d entries for %d requests", n, clients*requests)
	}
}

// TestAPI_ForwardedFor sends X-Forwarded-For from a client and from a trusted proxy: only the
// proxy's may decide the recorded IP.
func TestAPI_ForwardedFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trusted []string
		remote  string
		want    string
	}{
		{name: "SpoofedByClient", remote: "203.0.113.10:40000", want: "203.0.113.10"},
		{name: "SpoofedByUntrustedPeer", trusted: []string{"10.0.0.0/8"}, remote: "203.0.113.10:40000", want: "203.0.113.10"},
		{name: "FromTrustedProxy", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.5:40000", want: "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, tt.trusted...)
			e.mustDo(t, request{method: "POST", path: "/users", token: "bob-token", remote: tt.remote, xff: "198.51.100.7",
				body: map[string]string{"name": "Dan", "email": "dan@example.com"}}, 201)
			events := e.events(t)
			if len(events) != 1 || events[0].ActorIP != tt.want {
				t.Fatalf("peer %s sent X-Forwarded-For 198.51.100.7: entries %v, want one with IP %s", tt.remote, events, tt.want)
			}
		})
	}
}

// TestAPI_RefusedRequests sends requests the API must refuse: each must leave no audited write
// behind, and the API must go on serving.
func TestAPI_RefusedRequests(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.mustDo(t, request{method: "POST", path: "/users", token: "alice-token", body: map[string]string{"name": "Eve", "email": "eve@example.com"}}, 201)
	p := e.mustDo(t, request{method: "POST", path: "/payments", token: "alice-token", body: map[string]any{"user_id": u["id"], "amount_cents": 5, "currency": "EUR"}}, 201)
	uid := strconv.FormatInt(int64(u["id"].(float64)), 10)
	pid := strconv.FormatInt(int64(p["id"].(float64)), 10)
	before := len(e.events(t))
	tests := []struct {
		name string
		req  request
		want int
	}{
		{name: "NoToken", req: request{method: "POST", path: "/users", body: map[string]string{"name": "X", "email": "x@example.com"}}, want: 401},
		{name: "ZeroAmount", req: request{method: "POST", path: "/payments", token: "alice-token", body: map[string]any{"user_id": u["id"], "amount_cents": 0, "currency": "EUR"}}, want: 400},
		{name: "BadCurrency", req: request{method: "POST", path: "/payments", token: "alice-token", body: map[string]any{"user_id": u["id"], "amount_cents": 5, "currency": "euro"}}, want: 400},
		{name: "OtherTenantsUser", req: request{method: "POST", path: "/payments", token: "bob-token", body: map[string]any{"user_id": u["id"], "amount_cents": 5, "currency": "EUR"}}, want: 404},
		{name: "OtherTenantsPayment", req: request{method: "POST", path: "/payments/" + pid + "/refund", token: "bob-token"}, want: 404},
		{name: "OtherTenantsPII", req: request{method: "GET", path: "/users/" + uid, token: "bob-token"}, want: 404},
		{name: "UnknownField", req: request{method: "POST", path: "/users", token: "alice-token", body: map[string]string{"name": "X", "email": "x@example.com", "admin": "yes"}}, want: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.mustDo(t, tt.req, tt.want)
		})
	}
	e.mustDo(t, request{method: "POST", path: "/payments/" + pid + "/refund", token: "alice-token"}, 200)
	e.mustDo(t, request{method: "POST", path: "/payments/" + pid + "/refund", token: "alice-token"}, 409)
	events := e.events(t)
	if len(events) != before+1 {
		t.Fatalf("refused requests left entries: %v", events[before:])
	}
	if x := events[before]; x.Action != "UPDATE" || x.ResourceID != pid {
		t.Errorf("the only new entry is %v, want the refund", x)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
