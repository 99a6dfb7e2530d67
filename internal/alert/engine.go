package alert

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail"
)

// Engine evaluates rules on events and returns the alerts they fire. Windows and cooldowns are
// measured by the events' occurred_at, not by the clock; memory is bounded by Config.MaxKeys
// keys per rule. An Engine is not safe for concurrent use.
type Engine struct {
	rules         []rule
	now           func() time.Time
	skipOlderThan time.Duration
	m             *Metrics
}

// NewEngine checks cfg and returns an Engine for its enabled rules. now is the clock used for
// FiredAt and Config.SkipOlderThan (nil: time.Now); m may be nil.
func NewEngine(cfg *Config, now func() time.Time, m *Metrics) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	c := cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	e := &Engine{now: now, skipOlderThan: c.SkipOlderThan, m: m}
	for _, rc := range c.Rules {
		if rc.Disabled {
			continue
		}
		rc = rc.withDefaults()
		b := base{cfg: rc, actions: map[string]bool{}, m: m}
		for _, a := range rc.Actions {
			b.actions[a] = true
		}
		b.keys = newKeyTable(max(rc.Window, rc.Cooldown), c.MaxKeys, func() { m.evicted(rc.Name) })
		switch rc.Type {
		case TypeBruteForce:
			e.rules = append(e.rules, &bruteForce{base: b})
		case TypeBulkExport:
			e.rules = append(e.rules, &bulkExport{base: b})
		case TypePrivilegeEscalation:
			r := &privilegeEscalation{base: b, admin: map[string]bool{}}
			for _, role := range rc.AdminRoles {
				r.admin[strings.ToLower(role)] = true
			}
			e.rules = append(e.rules, r)
		case TypeOffHours:
			r := &offHours{base: b}
			r.loc, _ = time.LoadLocation(rc.Timezone) // checked by Validate
			r.start, r.end, _ = parseHours(rc.WorkingHours)
			for _, d := range rc.Weekdays {
				wd, _ := parseWeekday(d)
				r.days[wd] = true
			}
			e.rules = append(e.rules, r)
		case TypeTampering:
			e.rules = append(e.rules, &tampering{base: b})
		}
	}
	return e, nil
}

// Event evaluates one event and returns the alerts it fires, in rule order. ALERT events, and
// events older than Config.SkipOlderThan, are not evaluated.
func (e *Engine) Event(ev *pgtrail.Event) []Alert {
	if ev.ActionType == ActionAlert {
		return nil
	}
	if e.skipOlderThan > 0 && e.now().Sub(ev.OccurredAt) > e.skipOlderThan {
		e.m.skipped()
		return nil
	}
	e.m.evaluated()
	var out []Alert
	for _, r := range e.rules {
		out = append(out, r.event(ev)...)
	}
	return e.stamp(out)
}

// WALTampering evaluates an UPDATE, DELETE or TRUNCATE of audit.events seen in the WAL at time
// at (the daemon's clock: the WAL carries no event time). seq is the affected entry, or "".
func (e *Engine) WALTampering(op, seq string, at time.Time) []Alert {
	var out []Alert
	for _, r := range e.rules {
		if t, ok := r.(*tampering); ok {
			out = append(out, t.wal(op, seq, at)...)
		}
	}
	return e.stamp(out)
}

func (e *Engine) stamp(alerts []Alert) []Alert {
	now := e.now().UTC()
	for i := range alerts {
		a := &alerts[i]
		a.FiredAt = now
		if a.Events == nil {
			a.Events = []EventRef{}
		}
		for i, r := range a.Events {
			if i == 0 || r.Seq < a.FirstSeq {
				a.FirstSeq = r.Seq
			}
			a.LastSeq = max(a.LastSeq, r.Seq)
		}
		var id [16]byte
		rand.Read(id[:])
		a.id = hex.EncodeToString(id[:])
		e.m.fired(a.Rule)
	}
	return alerts
}

// rule is one configured rule.
type rule interface {
	event(ev *pgtrail.Event) []Alert
}

// base is what every rule has: its configuration and its keys with their cooldowns.
type base struct {
	cfg     RuleConfig
	actions map[string]bool
	keys    *keyTable
	m       *Metrics
}

// fire returns an alert for key unless the key is cooling down at time at; it starts the
// cooldown.
func (b *base) fire(st *keyState, at time.Time, evs []EventRef, format string, args ...any) []Alert {
	if at.Before(st.quietUntil) {
		b.m.suppressed(b.cfg.Name)
		return nil
	}
	st.quietUntil = at.Add(b.cfg.Cooldown)
	return []Alert{{Rule: b.cfg.Name, Severity: b.cfg.Severity, Key: st.key, Summary: fmt.Sprintf(format, args...), Events: evs}}
}

// fireOne is fire for rules that fire on a single event.
func (b *base) fireOne(key string, ev *pgtrail.Event, format string, args ...any) []Alert {
	return b.fire(b.keys.get(key, ev.OccurredAt), ev.OccurredAt, []EventRef{refOf(ev)}, format, args...)
}

// bruteForce: more than Threshold events with the same key within Window.
type bruteForce struct{ base }

func (r *bruteForce) event(ev *pgtrail.Event) []Alert {
	if !r.actions[ev.ActionType] {
		return nil
	}
	at, limit := ev.OccurredAt, int(r.cfg.Threshold)+1
	var out []Alert
	for _, key := range r.keysOf(ev) {
		st := r.keys.get(key, at)
		// Keep the events in occurred_at order (sealing order can differ slightly), only those
		// inside the window ending at the newest, and no more than it takes to fire.
		i := sort.Search(len(st.events), func(i int) bool { return st.events[i].OccurredAt.After(at) })
		st.events = append(st.events, EventRef{})
		copy(st.events[i+1:], st.events[i:])
		st.events[i] = refOf(ev)
		newest := st.events[len(st.events)-1].OccurredAt
		cut := 0
		for cut < len(st.events) && newest.Sub(st.events[cut].OccurredAt) >= r.cfg.Window {
			cut++
		}
		cut = max(cut, len(st.events)-limit)
		st.events = append(st.events[:0], st.events[cut:]...)
		if len(st.events) > int(r.cfg.Threshold) {
			out = append(out, r.fire(st, at, append([]EventRef(nil), st.events...),
				"%d %s events for %s within %s (more than %d)", len(st.events), ev.ActionType, key, fmtDur(r.cfg.Window), r.cfg.Threshold)...)
		}
	}
	return out
}

// keysOf returns the keys an event counts under: actor (unless it is only the database user,
// which pgtrail puts there when the application set no actor), ip (actor_ip, else
// actor_ip_raw), user (details user or username, else resource_id: the account tried).
func (r *bruteForce) keysOf(ev *pgtrail.Event) []string {
	var keys []string
	actor := ""
	for _, k := range r.cfg.Keys {
		switch k {
		case "actor":
			if ev.ActorID != "" && ev.ActorID != ev.DBUser {
				actor = ev.ActorID
				keys = append(keys, "actor:"+actor)
			}
		case "ip":
			if ip := deref(ev.ActorIP, deref(ev.ActorIPRaw, "")); ip != "" {
				keys = append(keys, "ip:"+ip)
			}
		case "user":
			u := detailString(ev, "user", "username")
			if u == "" {
				u = deref(ev.ResourceID, "")
			}
			if u != "" && u != actor {
				keys = append(keys, "user:"+u)
			}
		}
	}
	return keys
}

// bulkExport: one export of more than Threshold records.
type bulkExport struct{ base }

func (r *bulkExport) event(ev *pgtrail.Event) []Alert {
	if !r.actions[ev.ActionType] {
		return nil
	}
	n, field, ok := detailCount(ev, r.cfg.CountFields)
	if !ok || n <= float64(r.cfg.Threshold) {
		return nil
	}
	return r.fireOne("actor:"+ev.ActorID, ev, "%s of %s records (details.%s) from %s by %s (more than %d)",
		ev.ActionType, strconv.FormatFloat(n, 'f', -1, 64), field, resource(ev), ev.ActorID, r.cfg.Threshold)
}

// privilegeEscalation: a grant of an admin role. The role is details.role, else resource_id;
// the grantee details.grantee (or user, member), else resource_id when the role came from
// details.
type privilegeEscalation struct {
	base
	admin map[string]bool
}

func (r *privilegeEscalation) event(ev *pgtrail.Event) []Alert {
	if !r.actions[ev.ActionType] {
		return nil
	}
	role := detailString(ev, "role")
	grantee := detailString(ev, "grantee", "user", "member")
	if role == "" {
		role = deref(ev.ResourceID, "")
	} else if grantee == "" {
		grantee = deref(ev.ResourceID, "")
	}
	if !r.admin[strings.ToLower(role)] {
		return nil
	}
	key, to := "role:"+role, ""
	if grantee != "" {
		key += " grantee:" + grantee
		to = " to " + grantee
	}
	return r.fireOne(key, ev, "%s of admin role %q%s by %s (outcome %s)", ev.ActionType, role, to, ev.ActorID, ev.Outcome)
}

// offHours: a watched action outside working hours, in the rule's time zone.
type offHours struct {
	base
	loc        *time.Location
	start, end int // minutes of the day
	days       [7]bool
}

func (r *offHours) working(t time.Time) bool {
	local := t.In(r.loc)
	m := local.Hour()*60 + local.Minute()
	inHours := m >= r.start && m < r.end
	if r.start > r.end { // spans midnight
		inHours = m >= r.start || m < r.end
	}
	return r.days[local.Weekday()] && inHours
}

func (r *offHours) event(ev *pgtrail.Event) []Alert {
	if !r.actions[ev.ActionType] || r.working(ev.OccurredAt) {
		return nil
	}
	return r.fireOne("actor:"+ev.ActorID, ev, "%s of %s by %s at %s %s, outside working hours %s %s",
		ev.ActionType, resource(ev), ev.ActorID, ev.OccurredAt.In(r.loc).Format("Mon 2006-01-02 15:04"), r.cfg.Timezone,
		r.cfg.WorkingHours, strings.Join(r.cfg.Weekdays, ","))
}

// tampering: the trail modified (seen in the WAL, or the TAMPERING event the daemon records for
// it: both keyed trail_modified:audit.events, so one alert), a trigger disabled on an audited
// table or the audit schema, auditing disabled on a table, and an entry the stream flagged when it
// captured it from the WAL (details.capture_warning: made with pgtrail's triggers disabled, a
// slot created anew, ...).
type tampering struct{ base }

// triggerOff matches the DDL that stops triggers from firing for ordinary sessions.
var triggerOff = regexp.MustCompile(`(?i)\b(DISABLE\s+TRIGGER|ENABLE\s+REPLICA\s+TRIGGER)\b`)

func (r *tampering) event(ev *pgtrail.Event) []Alert {
	if w := detailString(ev, "capture_warning"); w != "" {
		return r.fireOne("capture_warning:"+ev.ResourceType, ev, "%s of %s %s flagged by the stream: %s",
			ev.ActionType, ev.ResourceType, deref(ev.ResourceID, ""), w)
	}
	switch ev.ActionType {
	case "TAMPERING":
		op := detailString(ev, "operation")
		return r.fireOne("trail_modified:"+ev.ResourceType, ev, "%s of %s entry %s seen in the WAL (recorded by %s)",
			op, ev.ResourceType, deref(ev.ResourceID, "?"), ev.ActorID)
	case "AUDIT_DISABLE":
		return r.fireOne("audit_disabled:"+deref(ev.ResourceID, ev.ResourceType), ev, "auditing disabled on %s by %s",
			deref(ev.ResourceID, ev.ResourceType), ev.ActorID)
	case "DDL":
		query := detailString(ev, "query")
		if detailString(ev, "command_tag") != "ALTER TABLE" || !triggerOff.MatchString(query) {
			return nil
		}
		table := deref(ev.ResourceID, ev.ResourceType)
		return r.fireOne("trigger_disabled:"+table, ev, "triggers disabled on %s by %s: %s", table, ev.ActorID, clip(query, 200))
	}
	return nil
}

func (r *tampering) wal(op, seq string, at time.Time) []Alert {
	const table = "audit.events"
	st := r.keys.get("trail_modified:"+table, at)
	entry := "an entry"
	if seq != "" {
		entry = "entry " + seq
	}
	alerts := r.fire(st, at, nil, "%s of %s %s seen in the WAL: only a superuser bypassing the guard triggers can do this", op, table, entry)
	if n, err := strconv.ParseInt(seq, 10, 64); err == nil {
		for i := range alerts {
			alerts[i].FirstSeq, alerts[i].LastSeq = n, n
		}
	}
	return alerts
}

// keyTable holds per-key state of one rule, least recently touched first. A key is forgotten
// once nothing about it matters any more (ttl after its newest event), or, beyond max keys,
// least recently touched first.
type keyTable struct {
	ttl     time.Duration
	max     int
	m       map[string]*list.Element
	lru     list.List
	evicted func()
}

type keyState struct {
	key        string
	newest     time.Time
	events     []EventRef // brute_force: in the window, occurred_at order
	quietUntil time.Time
}

func newKeyTable(ttl time.Duration, maxKeys int, evicted func()) *keyTable {
	return &keyTable{ttl: ttl, max: maxKeys, m: map[string]*list.Element{}, evicted: evicted}
}

// get returns key's state, created if new, and marks it as touched at event time at.
func (t *keyTable) get(key string, at time.Time) *keyState {
	if el, ok := t.m[key]; ok {
		t.lru.MoveToBack(el)
		st := el.Value.(*keyState)
		if at.After(st.newest) {
			st.newest = at
		}
		return st
	}
	// Expire from the front: keys touched long ago whose window and cooldown are over.
	for el := t.lru.Front(); el != nil; el = t.lru.Front() {
		st := el.Value.(*keyState)
		if at.Sub(st.newest) <= t.ttl || at.Before(st.quietUntil) {
			break
		}
		t.remove(el)
	}
	for len(t.m) >= t.max {
		t.remove(t.lru.Front())
		t.evicted()
	}
	st := &keyState{key: key, newest: at}
	t.m[key] = t.lru.PushBack(st)
	return st
}

func (t *keyTable) remove(el *list.Element) {
	delete(t.m, el.Value.(*keyState).key)
	t.lru.Remove(el)
}

// parseDetails parses an event's details; nil when it has none or they are not an object.
func parseDetails(ev *pgtrail.Event) map[string]any {
	if ev.Details == nil {
		return nil
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(*ev.Details))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return nil
	}
	return m
}

// detailString returns the first of fields that details hold as a non-empty string.
func detailString(ev *pgtrail.Event, fields ...string) string {
	d := parseDetails(ev)
	for _, f := range fields {
		if s, ok := d[f].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// detailCount returns the first of fields that details hold as a number or a numeric string.
func detailCount(ev *pgtrail.Event, fields []string) (float64, string, bool) {
	d := parseDetails(ev)
	for _, f := range fields {
		var s string
		switch v := d[f].(type) {
		case json.Number:
			s = v.String()
		case string:
			s = strings.TrimSpace(v)
		default:
			continue
		}
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			return n, f, true
		}
	}
	return 0, "", false
}

func resource(ev *pgtrail.Event) string {
	if ev.ResourceID != nil {
		return ev.ResourceType + " " + *ev.ResourceID
	}
	return ev.ResourceType
}

func deref(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

func clip(s string, n int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) <= n {
		return string(r)
	}
	return string(r[:n]) + "…"
}

// fmtDur prints 5m rather than 5m0s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
