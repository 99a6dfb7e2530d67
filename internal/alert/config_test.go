package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/internal/fileinput/fileinputtest"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// TestParse_Example loads the example rules file shipped in deploy/.
func TestParse_Example(t *testing.T) {
	cfg, err := Load(context.Background(), "../../deploy/alerts.example.yaml", env(map[string]string{"ALERT_TOKEN": "s3cret", "PAGER_WEBHOOK_URL": "https://pager.example.com/x"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Webhooks["security"].Headers["Authorization"]; got != "Bearer s3cret" {
		t.Errorf("Authorization header %q, want the token from the environment", got)
	}
	if got := cfg.Webhooks["pager"].URL; got != "https://pager.example.com/x" {
		t.Errorf("pager url %q", got)
	}
	var types []string
	for _, r := range cfg.Rules {
		types = append(types, r.Type)
	}
	if got := strings.Join(types, ","); got != "brute_force,bulk_export,privilege_escalation,off_hours,tampering" {
		t.Errorf("rule types %s", got)
	}
	if _, err := NewEngine(cfg, nil, nil); err != nil {
		t.Error(err)
	}
}

// TestLoad_Hostile gives Load rules files that only look like one: 48 MB of valid rules (which
// once parsed into 2.4 GB), a file one byte over the limit, a FIFO whose writer never writes.
// What must survive: memory (the process grows by less than 64 MiB), the caller's control (the
// FIFO read ends with the context) and a one-line error naming the file and the 4 MiB limit. A
// file just under the limit still loads. (/dev/zero is tried on the real binary, under a memory
// limit, in cmd/pgtrail.)
func TestLoad_Hostile(t *testing.T) {
	dir := t.TempDir()
	rulesOf := func(name string, size int) string {
		var b bytes.Buffer
		b.WriteString("rules:\n")
		for i := 0; ; i++ {
			line := fmt.Sprintf("  - {name: t%07d, type: tampering}\n", i)
			if b.Len()+len(line) > size {
				break
			}
			b.WriteString(line)
		}
		b.WriteString(strings.Repeat("#", size-b.Len()))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	big := rulesOf("big.yaml", 48<<20)
	over := rulesOf("over.yaml", MaxRulesFileSize+1)
	under := rulesOf("under.yaml", 64<<10)
	fifo := fileinputtest.StalledFIFO(t, dir, "rules.fifo")
	cases := []struct {
		name, path, wantErr string
	}{
		{"48MB", big, big + ": more than 4 MiB, the limit for a rules file"},
		{"OverByOne", over, over + ": more than 4 MiB, the limit for a rules file"},
		{"SilentFIFO", fifo, "read " + fifo + ": context deadline exceeded"},
		{"UnderLimit", under, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			type result struct {
				cfg *Config
				err error
			}
			done := make(chan result, 1)
			go func() { cfg, err := Load(ctx, tc.path, nil); done <- result{cfg, err} }()
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Load(%s) still reading 4.5 s after its context ended", tc.path)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; tc.wantErr != "" && grew > 64<<20 {
				t.Errorf("Load allocated %d MiB for a file it refuses", grew>>20)
			}
			switch {
			case tc.wantErr == "" && (r.err != nil || len(r.cfg.Rules) == 0):
				t.Errorf("Load(%s) = %v; want it loaded", tc.path, r.err)
			case tc.wantErr != "" && (r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) || strings.Contains(r.err.Error(), "\n")):
				t.Errorf("Load(%s) = %v; want one line with %q", tc.path, r.err, tc.wantErr)
			}
		})
	}
	// Parse, given the bytes directly, refuses them unparsed too.
	data, _ := os.ReadFile(over)
	if _, err := Parse(data, "over.yaml", nil); err == nil || !strings.Contains(err.Error(), "more than 4 MiB") {
		t.Errorf("Parse of %d bytes = %v; want refused", len(data), err)
	}
}

// TestParse_Defaults: what a minimal file means.
func TestParse_Defaults(t *testing.T) {
	cfg, err := Parse([]byte("rules:\n  - name: bf\n    type: brute_force\n  - {name: pii, type: off_hours}\n"), "min.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SkipOlderThan != DefaultSkipOlderThan {
		t.Errorf("skip_older_than %s, want the default %s", cfg.SkipOlderThan, DefaultSkipOlderThan)
	}
	bf := cfg.Rules[0].withDefaults()
	if bf.Threshold != 5 || bf.Window != 5*time.Minute || bf.Cooldown != 5*time.Minute || bf.Severity != "high" ||
		strings.Join(bf.Keys, ",") != "actor,ip,user" || strings.Join(bf.Actions, ",") != "FAILED_LOGIN" {
		t.Errorf("brute_force defaults: %+v", bf)
	}
	pii := cfg.Rules[1].withDefaults()
	if pii.Timezone != "UTC" || pii.WorkingHours != "08:00-18:00" || len(pii.Weekdays) != 5 || pii.Actions[0] != "VIEW_PII" {
		t.Errorf("off_hours defaults: %+v", pii)
	}
}

// TestParse_Errors: every bad file is refused with the line and the field named.
func TestParse_Errors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"Empty", "", []string{"r.yaml: empty rules file"}},
		{"Malformed", "rules:\n  - name: a\n    type: [tampering\n", []string{"r.yaml:2: did not find expected ',' or ']'"}},
		{"Tab", "rules:\n\t- name: a\n", []string{"r.yaml:2: found character that cannot start any token"}},
		{"NotAMapping", "- a\n- b\n", []string{"r.yaml:1: must be a mapping of a rules file"}},
		{"NoRules", "webhooks: {}\n", []string{"r.yaml:1: rules: missing"}},
		{"RulesNotAList", "rules: {a: 1}\n", []string{"r.yaml:1: rules: must be a list"}},
		{"UnknownTopField", "rule:\n  - {name: a, type: tampering}\n", []string{`r.yaml:1: rule: unknown field "rule"`}},
		{"UnknownRuleType", "rules:\n  - name: a\n    type: brute_forse\n", []string{
			`r.yaml:3: rules[0].type: unknown rule type "brute_forse"; one of brute_force, bulk_export, off_hours, privilege_escalation, tampering`}},
		{"MissingType", "rules:\n  - name: a\n", []string{"r.yaml:2: rules[0].type: missing"}},
		{"FieldOfAnotherType", "rules:\n  - name: a\n    type: tampering\n    threshold: 3\n", []string{
			`r.yaml:4: rules[0].threshold: unknown field "threshold" for a tampering rule`}},
		{"MisspelledField", "rules:\n  - name: a\n    type: brute_force\n    treshold: 3\n", []string{`r.yaml:4: rules[0].treshold: unknown field "treshold"`}},
		{"UnknownWebhookField", "webhooks:\n  a:\n    url: http://x\n    retries: 3\nrules:\n  - {name: a, type: tampering}\n",
			[]string{`r.yaml:4: webhooks.a.retries: unknown field "retries"`}},
		{"WrongValueType", "rules:\n  - name: a\n    type: brute_force\n    threshold: five\n", []string{"r.yaml:4: cannot unmarshal", "five"}},
		{"DurationWithoutUnit", "rules:\n  - name: a\n    type: brute_force\n    window: 300\n", []string{"r.yaml:4: cannot unmarshal", "300"}},
		{"ExplicitZero", "rules:\n  - name: a\n    type: brute_force\n    threshold: 0\n", []string{"r.yaml:4: rules[0].threshold: must be positive"}},
		{"NegativeThreshold", "rules:\n  - name: a\n    type: bulk_export\n    threshold: -1\n", []string{"r.yaml:4: rules[0].threshold: must be positive"}},
		{"HugeBruteForceThreshold", "rules:\n  - name: a\n    type: brute_force\n    threshold: 1000000\n", []string{"r.yaml:4: rules[0].threshold: at most 10000"}},
		{"BadName", "rules:\n  - name: 'a b'\n    type: tampering\n", []string{"r.yaml:2: rules[0].name: missing or not a name"}},
		{"NoName", "rules:\n  - type: tampering\n", []string{"r.yaml:2: rules[0].name: missing"}},
		{"DuplicateName", "rules:\n  - {name: a, type: tampering}\n  - {name: a, type: bulk_export}\n", []string{`r.yaml:3: rules[1].name: "a" is already the name of rules[0]`}},
		{"BadSeverity", "rules:\n  - name: a\n    type: tampering\n    severity: urgent\n", []string{`r.yaml:4: rules[0].severity: "urgent"`}},
		{"BadKey", "rules:\n  - name: a\n    type: brute_force\n    keys: [ip, tenant]\n", []string{`r.yaml:4: rules[0].keys[1]: "tenant"`}},
		{"AlertAction", "rules:\n  - name: a\n    type: off_hours\n    actions: [ALERT]\n", []string{"r.yaml:4: rules[0].actions[0]: ALERT events are never evaluated"}},
		{"LowerCaseAction", "rules:\n  - name: a\n    type: off_hours\n    actions: [view_pii]\n", []string{"r.yaml:4: rules[0].actions[0]"}},
		{"BadTimezone", "rules:\n  - name: a\n    type: off_hours\n    timezone: Mars/Olympus\n", []string{"r.yaml:4: rules[0].timezone"}},
		{"BadHours", "rules:\n  - name: a\n    type: off_hours\n    working_hours: 9-5\n", []string{"r.yaml:4: rules[0].working_hours"}},
		{"EmptyHours", "rules:\n  - name: a\n    type: off_hours\n    working_hours: 08:00-08:00\n", []string{"r.yaml:4: rules[0].working_hours", "the same"}},
		{"BadWeekday", "rules:\n  - name: a\n    type: off_hours\n    weekdays: [mon, fr]\n", []string{"r.yaml:4: rules[0].weekdays[1]"}},
		{"UnknownWebhook", "rules:\n  - name: a\n    type: tampering\n    webhooks: [ops]\n", []string{`r.yaml:4: rules[0].webhooks[0]: no webhook named "ops"`}},
		{"UnknownDefaultWebhook", "default_webhooks: [ops]\nrules:\n  - {name: a, type: tampering}\n", []string{`r.yaml:1: default_webhooks[0]: no webhook named "ops"`}},
		{"BadURL", "webhooks:\n  ops:\n    url: ftp://x\nrules:\n  - {name: a, type: tampering}\n", []string{"r.yaml:3: webhooks.ops.url: must be an http"}},
		{"NoURL", "webhooks:\n  ops:\n    timeout: 1s\nrules:\n  - {name: a, type: tampering}\n", []string{"r.yaml:2: webhooks.ops.url: missing"}},
		{"UnsetEnv", "webhooks:\n  ops:\n    url: http://x\n    headers:\n      Authorization: Bearer ${NOPE}\nrules:\n  - {name: a, type: tampering}\n",
			[]string{"r.yaml:5: webhooks.ops.headers.Authorization: environment variable NOPE is not set"}},
		{"BadHeader", "webhooks:\n  ops:\n    url: http://x\n    headers:\n      'Bad Header': x\nrules:\n  - {name: a, type: tampering}\n",
			[]string{"r.yaml:5: webhooks.ops.headers.Bad Header: not a valid HTTP header name"}},
		{"DuplicateKey", "rules:\n  - name: a\n    name: b\n    type: tampering\n", []string{`r.yaml:3: mapping key "name" already defined at line 2`}},
		{"TwoDocuments", "rules:\n  - {name: a, type: tampering}\n---\nrules: []\n", []string{"r.yaml:3: more than one YAML document"}},
		{"SeveralProblems", "rules:\n  - {name: a, type: nope}\n  - {name: b, type: tampering, window: 1m}\n",
			[]string{"r.yaml:2: rules[0].type", "r.yaml:3: rules[1].window"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "r.yaml", env(nil))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
}

// TestConfig_Validate checks a configuration built in Go (no file, no lines).
func TestConfig_Validate(t *testing.T) {
	cfg := &Config{Rules: []RuleConfig{{Name: "x", Type: TypeBruteForce, Keys: []string{"ip"}, AdminRoles: []string{"admin"}}}}
	err := cfg.Validate()
	if err == nil || err.Error() != "rules[0].admin_roles: a brute_force rule does not take it" {
		t.Errorf("Validate = %v", err)
	}
	if _, err := NewEngine(cfg, nil, nil); err == nil {
		t.Error("NewEngine accepted an invalid configuration")
	}
}
