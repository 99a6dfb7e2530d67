package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgtrail/pgtrail/internal/fileinput"
)

// MaxRulesFileSize bounds a rules file: real ones are a few KiB, and YAML takes about 45 times
// its size in memory to parse (a 48 MB file took 2.4 GB).
const MaxRulesFileSize = 4 << 20

// Rule types a rules file may name.
const (
	TypeBruteForce          = "brute_force"
	TypeBulkExport          = "bulk_export"
	TypePrivilegeEscalation = "privilege_escalation"
	TypeOffHours            = "off_hours"
	TypeTampering           = "tampering"
)

// Severities, lowest first.
var severities = []string{"info", "low", "medium", "high", "critical"}

// Defaults of Config and RuleConfig, applied where a field is zero.
const (
	DefaultQueueSize      = 1000
	DefaultStopTimeout    = 10 * time.Second
	DefaultSkipOlderThan  = 24 * time.Hour
	DefaultMaxKeys        = 100_000
	DefaultWebhookTimeout = 10 * time.Second
	DefaultMaxAttempts    = 5
	DefaultBackoff        = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultCooldown       = 5 * time.Minute

	DefaultBruteForceThreshold = 5
	DefaultBruteForceWindow    = 5 * time.Minute
	DefaultBulkExportThreshold = 10_000
	DefaultWorkingHours        = "08:00-18:00"
	// MaxBruteForceThreshold bounds the events a brute_force rule keeps per key.
	MaxBruteForceThreshold = 10_000
)

// Config is a rules file: where alerts go and which rules fire them. Parse reads one; the zero
// value of a field means its default.
type Config struct {
	// Webhooks by name; rules refer to them by these names.
	Webhooks map[string]WebhookConfig `yaml:"webhooks"`
	// DefaultWebhooks receive the alerts of rules that name none.
	DefaultWebhooks []string `yaml:"default_webhooks"`
	// QueueSize bounds each destination's queue (each webhook, and the recording of ALERT
	// events): when one is full, its new alerts are dropped, logged and counted.
	QueueSize int `yaml:"queue_size"`
	// StopTimeout bounds how long Stop waits for queued alerts to go out.
	StopTimeout time.Duration `yaml:"stop_timeout"`
	// SkipOlderThan: events whose occurred_at is older than this (by the daemon's clock) are not
	// evaluated, so that archiving an old backlog does not page anyone. Parse sets
	// DefaultSkipOlderThan when the file does not say; 0 evaluates everything.
	SkipOlderThan time.Duration `yaml:"skip_older_than"`
	// MaxKeys bounds how many keys (actors, IPs, ...) each rule remembers; the least recently
	// seen are forgotten first.
	MaxKeys int `yaml:"max_keys"`
	// Rules in the order they are evaluated.
	Rules []RuleConfig `yaml:"rules"`
}

// WebhookConfig is one HTTP endpoint that receives alerts as JSON POSTs.
type WebhookConfig struct {
	// URL, http or https. ${NAME} is replaced by the environment variable NAME.
	URL string `yaml:"url"`
	// Headers sent with every request; ${NAME} in a value is replaced by the environment
	// variable NAME (e.g. Authorization: Bearer ${ALERT_TOKEN}).
	Headers map[string]string `yaml:"headers"`
	// Timeout of one attempt.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts: how many times one alert is tried before it is given up (logged, counted).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait before the first retry; it doubles (with jitter) up to MaxBackoff.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// RuleConfig is one rule. Which fields apply depends on Type; a rules file that sets a field
// its type does not use is refused.
type RuleConfig struct {
	// Name identifies the rule in alerts and in the ALERT events recorded (resource_id).
	Name string `yaml:"name"`
	// Type is one of the Type* constants.
	Type string `yaml:"type"`
	// Severity: info, low, medium, high or critical. Default per type.
	Severity string `yaml:"severity"`
	// Disabled rules are parsed and checked, never evaluated.
	Disabled bool `yaml:"disabled"`
	// Webhooks names where this rule's alerts go; Config.DefaultWebhooks when empty.
	Webhooks []string `yaml:"webhooks"`
	// Cooldown: after an alert, the same rule and key stay quiet this long (by event time).
	// Default: Window for brute_force, DefaultCooldown for the others.
	Cooldown time.Duration `yaml:"cooldown"`
	// Actions are the action_types the rule looks at. Default per type: FAILED_LOGIN, EXPORT,
	// ROLE_GRANT, VIEW_PII. Not for tampering.
	Actions []string `yaml:"actions"`

	// Threshold (brute_force): fire when more than this many events share a key within
	// Window. (bulk_export): fire when one export has more than this many records.
	Threshold int64 `yaml:"threshold"`
	// Window (brute_force): the sliding window, by occurred_at.
	Window time.Duration `yaml:"window"`
	// Keys (brute_force): what events are grouped by: actor, ip, user. Default all three.
	Keys []string `yaml:"keys"`

	// CountFields (bulk_export): details fields holding the record count, first present wins.
	// Default rows, records, count, row_count, record_count.
	CountFields []string `yaml:"count_fields"`

	// AdminRoles (privilege_escalation): role names whose grant fires, case-insensitive.
	AdminRoles []string `yaml:"admin_roles"`

	// Timezone (off_hours): IANA name, default UTC.
	Timezone string `yaml:"timezone"`
	// WorkingHours (off_hours): "HH:MM-HH:MM" local time, start inclusive, end exclusive; a
	// start after the end spans midnight. Default 08:00-18:00.
	WorkingHours string `yaml:"working_hours"`
	// Weekdays (off_hours): working days, mon..sun. Default mon-fri.
	Weekdays []string `yaml:"weekdays"`
}

// Fields every rule type accepts, and those each type adds.
var (
	commonRuleFields = []string{"name", "type", "severity", "disabled", "webhooks", "cooldown"}
	typeFields       = map[string][]string{
		TypeBruteForce:          {"actions", "threshold", "window", "keys"},
		TypeBulkExport:          {"actions", "threshold", "count_fields"},
		TypePrivilegeEscalation: {"actions", "admin_roles"},
		TypeOffHours:            {"actions", "timezone", "working_hours", "weekdays"},
		TypeTampering:           {},
	}
	defaultSeverity = map[string]string{
		TypeBruteForce:          "high",
		TypeBulkExport:          "high",
		TypePrivilegeEscalation: "critical",
		TypeOffHours:            "medium",
		TypeTampering:           "critical",
	}
	defaultActions = map[string][]string{
		TypeBruteForce:          {"FAILED_LOGIN"},
		TypeBulkExport:          {"EXPORT"},
		TypePrivilegeEscalation: {"ROLE_GRANT"},
		TypeOffHours:            {"VIEW_PII"},
	}
	topFields     = []string{"webhooks", "default_webhooks", "queue_size", "stop_timeout", "skip_older_than", "max_keys", "rules"}
	webhookFields = []string{"url", "headers", "timeout", "max_attempts", "backoff", "max_backoff"}

	// DefaultAdminRoles are the roles privilege_escalation watches when a rule names none.
	DefaultAdminRoles = []string{"admin", "administrator", "superuser", "root", "owner"}
	// DefaultCountFields are where bulk_export looks for an export's record count.
	DefaultCountFields = []string{"rows", "records", "count", "row_count", "record_count"}
	// BruteForceKeys are the keys brute_force can group by (all of them by default).
	BruteForceKeys = []string{"actor", "ip", "user"}
)

// ConfigError is one problem in a rules file: the line (0 when not known), the field's path
// (rules[2].threshold, webhooks.ops.url) and what is wrong.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and checks the rules file at path. lookupEnv resolves ${NAME} references (pass
// os.LookupEnv); nil resolves none, so any reference is an error. It reads at most
// MaxRulesFileSize bytes, and stops when ctx ends.
func Load(ctx context.Context, path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := fileinput.ReadFile(ctx, path, MaxRulesFileSize, "a rules file")
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return Parse(data, path, lookupEnv)
}

// Parse reads and checks a rules file; name is used in error messages. Every problem found is
// reported (errors.Join of *ConfigError), each with its line. data longer than MaxRulesFileSize
// is refused unparsed.
func Parse(data []byte, name string, lookupEnv func(string) (string, bool)) (*Config, error) {
	if len(data) > MaxRulesFileSize {
		return nil, &ConfigError{File: name, Msg: fmt.Sprintf("%d bytes, more than %s, the limit for a rules file",
			len(data), fileinput.FormatSize(MaxRulesFileSize))}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: name, Msg: "empty rules file: it needs a rules: list"}
		}
		return nil, typeError(name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: name, Line: extra.Line, Msg: "more than one YAML document; put everything in one"}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	p := &parser{file: name, lines: map[string]int{}}
	p.walk(doc)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				p.errs = append(p.errs, typeError(name, msg))
			}
			return nil, errors.Join(p.errs...)
		}
		return nil, &ConfigError{File: name, Msg: err.Error()}
	}
	if _, ok := p.lines["skip_older_than"]; !ok {
		cfg.SkipOlderThan = DefaultSkipOlderThan
	}
	p.expandEnv(&cfg, lookupEnv)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	if err := cfg.Validate(); err != nil {
		p.locate(err)
		return nil, err
	}
	return &cfg, nil
}

// typeError turns one of yaml's "line N: ..." messages into a ConfigError.
func typeError(file, msg string) *ConfigError {
	e := &ConfigError{File: file, Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				e.Line, e.Msg = line, after
			}
		}
	}
	return e
}

// parser checks the shape of the YAML tree (known fields, per rule type) and remembers the line
// of every field, so that Validate's errors can name it.
type parser struct {
	file  string
	lines map[string]int
	errs  []error
}

func (p *parser) fail(n *yaml.Node, field, format string, args ...any) {
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// mapping checks that n is a mapping with known keys, records their lines and returns the
// value nodes by key.
func (p *parser) mapping(n *yaml.Node, path string, known []string, what string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "must be a mapping of %s", what)
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		p.lines[field] = k.Line
		if known != nil && !slices.Contains(known, k.Value) {
			p.fail(k, field, "unknown field %s; %s takes %s", strconv.Quote(k.Value), what, strings.Join(known, ", "))
			continue
		}
		if slices.Contains(positiveFields, k.Value) && isZero(v) {
			p.fail(v, field, "must be positive (leave it out for the default)")
		}
		out[k.Value] = v
	}
	return out
}

// positiveFields are settings whose zero would mean "default" in Go: written as 0 in a rules
// file, they are refused rather than silently replaced.
var positiveFields = []string{"threshold", "window", "cooldown", "queue_size", "stop_timeout", "max_keys",
	"timeout", "max_attempts", "backoff", "max_backoff"}

func isZero(v *yaml.Node) bool {
	if v.Kind != yaml.ScalarNode {
		return false
	}
	if v.Value == "0" {
		return true
	}
	d, err := time.ParseDuration(v.Value)
	return err == nil && d == 0
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *parser) walk(doc *yaml.Node) {
	top := p.mapping(doc, "", topFields, "a rules file")
	if top == nil {
		return
	}
	if wh := top["webhooks"]; wh != nil {
		for name, w := range p.mapping(wh, "webhooks", nil, "webhook names to webhooks") {
			path := "webhooks." + name
			hooks := p.mapping(w, path, webhookFields, "a webhook")
			if h := hooks["headers"]; h != nil {
				p.mapping(h, path+".headers", nil, "header names to values")
			}
		}
	}
	rules := top["rules"]
	if rules == nil {
		p.errs = append(p.errs, &ConfigError{File: p.file, Line: doc.Line, Field: "rules", Msg: "missing: a rules file needs a rules: list"})
		return
	}
	p.lines["rules"] = rules.Line
	if rules.Kind != yaml.SequenceNode {
		p.fail(rules, "rules", "must be a list of rules")
		return
	}
	for i, r := range rules.Content {
		path := fmt.Sprintf("rules[%d]", i)
		p.lines[path] = r.Line
		fields := p.mapping(r, path, nil, "a rule")
		if fields == nil {
			continue
		}
		t := fields["type"]
		if t == nil {
			p.fail(r, path+".type", "missing; one of %s", strings.Join(ruleTypes(), ", "))
			continue
		}
		extra, ok := typeFields[t.Value]
		if !ok {
			p.fail(t, path+".type", "unknown rule type %s; one of %s", strconv.Quote(t.Value), strings.Join(ruleTypes(), ", "))
			continue
		}
		known := append(slices.Clone(commonRuleFields), extra...)
		for i := 0; i+1 < len(r.Content); i += 2 {
			k := r.Content[i]
			if !slices.Contains(known, k.Value) {
				p.fail(k, join(path, k.Value), "unknown field %s for a %s rule; it takes %s", strconv.Quote(k.Value), t.Value, strings.Join(known, ", "))
			}
		}
	}
}

func ruleTypes() []string {
	out := make([]string, 0, len(typeFields))
	for t := range typeFields {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in webhook URLs and header values.
func (p *parser) expandEnv(cfg *Config, lookupEnv func(string) (string, bool)) {
	expand := func(s, field string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			var v string
			ok := false
			if lookupEnv != nil {
				v, ok = lookupEnv(name)
			}
			if !ok {
				p.errs = append(p.errs, &ConfigError{File: p.file, Line: p.lines[field], Field: field,
					Msg: fmt.Sprintf("environment variable %s is not set", name)})
			}
			return v
		})
	}
	for name, w := range cfg.Webhooks {
		w.URL = expand(w.URL, "webhooks."+name+".url")
		for h, v := range w.Headers {
			w.Headers[h] = expand(v, "webhooks."+name+".headers."+h)
		}
		cfg.Webhooks[name] = w
	}
}

// locate fills in the line of each ConfigError in err from the parsed tree, and the file name.
func (p *parser) locate(err error) {
	for _, e := range unjoin(err) {
		var ce *ConfigError
		if errors.As(e, &ce) {
			ce.File = p.file
			if ce.Line == 0 {
				// The field itself, else the nearest enclosing one that was written.
				for f := ce.Field; f != "" && ce.Line == 0; f = parent(f) {
					ce.Line = p.lines[f]
				}
			}
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// parent of rules[2].threshold is rules[2]; of rules[2], rules; of webhooks.a.url, webhooks.a.
func parent(field string) string {
	if i := strings.LastIndexAny(field, ".["); i > 0 {
		return field[:i]
	}
	return ""
}

// Validate checks the configuration as given (zero fields stand for their defaults) and names
// each bad field (errors.Join of *ConfigError).
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.QueueSize < 0 {
		bad("queue_size", "must not be negative")
	}
	if c.StopTimeout < 0 {
		bad("stop_timeout", "must not be negative")
	}
	if c.SkipOlderThan < 0 {
		bad("skip_older_than", "must not be negative (0 evaluates everything)")
	}
	if c.MaxKeys < 0 {
		bad("max_keys", "must not be negative")
	}
	for _, name := range sortedKeys(c.Webhooks) {
		w := c.Webhooks[name]
		path := "webhooks." + name
		if u, err := url.Parse(w.URL); w.URL == "" {
			bad(path+".url", "missing")
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(path+".url", "must be an http:// or https:// URL")
		}
		for h := range w.Headers {
			if !validHeaderName(h) {
				bad(path+".headers."+h, "not a valid HTTP header name")
			}
		}
		if w.Timeout < 0 || w.Backoff < 0 || w.MaxBackoff < 0 {
			bad(path, "timeout, backoff and max_backoff must not be negative")
		}
		if w.MaxAttempts < 0 {
			bad(path+".max_attempts", "must not be negative")
		}
	}
	for i, name := range c.DefaultWebhooks {
		if _, ok := c.Webhooks[name]; !ok {
			bad(fmt.Sprintf("default_webhooks[%d]", i), "no webhook named %q", name)
		}
	}
	if len(c.Rules) == 0 {
		bad("rules", "no rules")
	}
	names := map[string]int{}
	for i, r := range c.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		if prev, dup := names[r.Name]; dup && r.Name != "" {
			bad(path+".name", "%q is already the name of rules[%d]", r.Name, prev)
		}
		names[r.Name] = i
		for j, name := range r.Webhooks {
			if _, ok := c.Webhooks[name]; !ok {
				bad(fmt.Sprintf("%s.webhooks[%d]", path, j), "no webhook named %q", name)
			}
		}
		for _, err := range unjoin(r.Validate()) {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = path + "." + ce.Field
				if strings.HasSuffix(ce.Field, ".") {
					ce.Field = path
				}
				errs = append(errs, ce)
			} else if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// Validate checks one rule (fields relative to the rule, errors.Join of *ConfigError).
func (r RuleConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !ruleNameRE.MatchString(r.Name) {
		bad("name", "missing or not a name: letters, digits, '.', '_' and '-', up to 100")
	}
	extra, ok := typeFields[r.Type]
	if !ok {
		bad("type", "unknown rule type %q; one of %s", r.Type, strings.Join(ruleTypes(), ", "))
		return errors.Join(errs...)
	}
	if r.Severity != "" && !slices.Contains(severities, r.Severity) {
		bad("severity", "%q: one of %s", r.Severity, strings.Join(severities, ", "))
	}
	if r.Cooldown < 0 {
		bad("cooldown", "must not be negative")
	}
	uses := func(f string) bool { return slices.Contains(extra, f) }
	unused := func(field string, set bool) {
		if set && !uses(field) {
			bad(field, "a %s rule does not take it", r.Type)
		}
	}
	unused("actions", len(r.Actions) > 0)
	unused("threshold", r.Threshold != 0)
	unused("window", r.Window != 0)
	unused("keys", len(r.Keys) > 0)
	unused("count_fields", len(r.CountFields) > 0)
	unused("admin_roles", len(r.AdminRoles) > 0)
	unused("timezone", r.Timezone != "")
	unused("working_hours", r.WorkingHours != "")
	unused("weekdays", len(r.Weekdays) > 0)
	for i, a := range r.Actions {
		if !actionRE.MatchString(a) {
			bad(fmt.Sprintf("actions[%d]", i), "%q is not an action_type (upper-case word like VIEW_PII)", a)
		} else if a == ActionAlert {
			bad(fmt.Sprintf("actions[%d]", i), "ALERT events are never evaluated (an alert must not trigger alerts)")
		}
	}
	if r.Threshold < 0 {
		bad("threshold", "must be positive")
	}
	if r.Type == TypeBruteForce && r.Threshold > MaxBruteForceThreshold {
		bad("threshold", "at most %d (a brute_force rule keeps that many events per key)", MaxBruteForceThreshold)
	}
	if r.Window < 0 {
		bad("window", "must be positive")
	}
	for i, k := range r.Keys {
		if !slices.Contains(BruteForceKeys, k) {
			bad(fmt.Sprintf("keys[%d]", i), "%q: one of %s", k, strings.Join(BruteForceKeys, ", "))
		}
	}
	for i, f := range r.CountFields {
		if f == "" {
			bad(fmt.Sprintf("count_fields[%d]", i), "empty")
		}
	}
	for i, role := range r.AdminRoles {
		if role == "" {
			bad(fmt.Sprintf("admin_roles[%d]", i), "empty")
		}
	}
	if r.Timezone != "" {
		if _, err := time.LoadLocation(r.Timezone); err != nil {
			bad("timezone", "%q: not a known time zone (IANA name like Europe/Berlin)", r.Timezone)
		}
	}
	if r.WorkingHours != "" {
		if _, _, err := parseHours(r.WorkingHours); err != nil {
			bad("working_hours", "%v", err)
		}
	}
	for i, d := range r.Weekdays {
		if _, err := parseWeekday(d); err != nil {
			bad(fmt.Sprintf("weekdays[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

var actionRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,62}$`)

// withDefaults fills a rule's zero fields.
func (r RuleConfig) withDefaults() RuleConfig {
	if r.Severity == "" {
		r.Severity = defaultSeverity[r.Type]
	}
	if len(r.Actions) == 0 {
		r.Actions = defaultActions[r.Type]
	}
	switch r.Type {
	case TypeBruteForce:
		if r.Threshold == 0 {
			r.Threshold = DefaultBruteForceThreshold
		}
		if r.Window == 0 {
			r.Window = DefaultBruteForceWindow
		}
		if r.Cooldown == 0 {
			r.Cooldown = r.Window
		}
		if len(r.Keys) == 0 {
			r.Keys = BruteForceKeys
		}
	case TypeBulkExport:
		if r.Threshold == 0 {
			r.Threshold = DefaultBulkExportThreshold
		}
		if len(r.CountFields) == 0 {
			r.CountFields = DefaultCountFields
		}
	case TypePrivilegeEscalation:
		if len(r.AdminRoles) == 0 {
			r.AdminRoles = DefaultAdminRoles
		}
	case TypeOffHours:
		if r.Timezone == "" {
			r.Timezone = "UTC"
		}
		if r.WorkingHours == "" {
			r.WorkingHours = DefaultWorkingHours
		}
		if len(r.Weekdays) == 0 {
			r.Weekdays = []string{"mon", "tue", "wed", "thu", "fri"}
		}
	}
	if r.Cooldown == 0 {
		r.Cooldown = DefaultCooldown
	}
	return r
}

// withDefaults fills the zero fields of the configuration and of its webhooks.
func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	hooks := make(map[string]WebhookConfig, len(c.Webhooks))
	for name, w := range c.Webhooks {
		if w.Timeout == 0 {
			w.Timeout = DefaultWebhookTimeout
		}
		if w.MaxAttempts == 0 {
			w.MaxAttempts = DefaultMaxAttempts
		}
		if w.Backoff == 0 {
			w.Backoff = DefaultBackoff
		}
		if w.MaxBackoff == 0 {
			w.MaxBackoff = DefaultMaxBackoff
		}
		hooks[name] = w
	}
	c.Webhooks = hooks
	return c
}

// parseHours parses "HH:MM-HH:MM" into minutes of the day.
func parseHours(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want HH:MM-HH:MM", s)
	}
	if start, err = parseClock(strings.TrimSpace(a)); err == nil {
		end, err = parseClock(strings.TrimSpace(b))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: want HH:MM-HH:MM: %v", s, err)
	}
	if start == end {
		return 0, 0, fmt.Errorf("%q: start and end are the same", s)
	}
	return start, end, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return hh*60 + mm, nil
}

func parseWeekday(s string) (time.Weekday, error) {
	l := strings.ToLower(s)
	for d := time.Sunday; d <= time.Saturday; d++ {
		full := strings.ToLower(d.String())
		if l == full || l == full[:3] {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%q is not a weekday (mon, tue, ...)", s)
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if c > 126 || c <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
