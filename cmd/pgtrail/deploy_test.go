package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeploy_CommandLinesParse reads the command lines that deploy/ ships (systemd units' ExecStart,
// with their example environment files; Kubernetes containers' args, with their ConfigMaps) and
// parses each as pgtrail would: a unit that names a flag that does not exist, or a value of the
// wrong form, would fail at 02:30 on a user's host, not here.
func TestDeploy_CommandLinesParse(t *testing.T) {
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) < 2 {
		t.Fatalf("systemd units: %v %v", units, err)
	}
	for _, unit := range units {
		t.Run(filepath.Base(unit), func(t *testing.T) {
			text := readFile(t, unit)
			vars := envFile(t, strings.TrimSuffix(unit, ".service")+".env.example")
			// ExecStart= and its continuation lines (ending in a backslash).
			var line string
			for rest, in := text, false; rest != ""; {
				var l string
				l, rest, _ = strings.Cut(rest, "\n")
				if after, ok := strings.CutPrefix(l, "ExecStart="); ok {
					l, in = after, true
				}
				if !in {
					continue
				}
				cont := strings.HasSuffix(l, "\\")
				line += " " + strings.TrimSuffix(l, "\\")
				if !cont {
					break
				}
			}
			line = os.Expand(line, func(k string) string { return vars[k] })
			args := strings.Fields(line)
			if len(args) < 2 || !strings.HasSuffix(args[0], "/pgtrail") {
				t.Fatalf("ExecStart: %q", line)
			}
			args = args[1:] // the binary
			if code, stderr := parseCLI(t, args...); code != 0 {
				t.Errorf("pgtrail %s: exit %d: %s", strings.Join(args, " "), code, stderr)
			}
		})
	}
	manifests, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(manifests) < 2 {
		t.Fatalf("manifests: %v %v", manifests, err)
	}
	for _, path := range manifests {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			type container struct{ Args []string }
			type podSpec struct{ Containers []container }
			var specs []podSpec
			vars := map[string]string{}
			for dec := yaml.NewDecoder(f); ; {
				var doc struct {
					Kind string
					Data map[string]string
					Spec struct {
						Template    struct{ Spec podSpec }
						JobTemplate struct {
							Spec struct{ Template struct{ Spec podSpec } }
						} `yaml:"jobTemplate"`
					}
				}
				if err := dec.Decode(&doc); err != nil {
					break
				}
				switch doc.Kind {
				case "ConfigMap":
					for k, v := range doc.Data {
						vars[k] = v
					}
				case "Deployment":
					specs = append(specs, doc.Spec.Template.Spec)
				case "CronJob":
					specs = append(specs, doc.Spec.JobTemplate.Spec.Template.Spec)
				}
			}
			n := 0
			for _, s := range specs {
				for _, c := range s.Containers {
					args := make([]string, len(c.Args))
					for i, a := range c.Args {
						args[i] = k8sVar.ReplaceAllStringFunc(a, func(v string) string { return vars[v[2:len(v)-1]] })
					}
					if code, stderr := parseCLI(t, args...); code != 0 {
						t.Errorf("pgtrail %s: exit %d: %s", strings.Join(args, " "), code, stderr)
					}
					n++
				}
			}
			if n == 0 {
				t.Error("no container args found")
			}
		})
	}
}

// k8sVar is a $(VAR) reference in a container's args.
var k8sVar = regexp.MustCompile(`\$\((\w+)\)`)

// envFile reads a systemd environment file's assignments.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, line := range strings.Split(readFile(t, path), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			vars[k] = v
		}
	}
	return vars
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
