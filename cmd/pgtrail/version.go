package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
)

// versionInfo is what "pgtrail version" prints.
type versionInfo struct {
	// Version is the module version ("v1.4.0", a pseudo-version), "(devel)" when unknown.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, "" when unknown (go run, go test).
	Commit string `json:"commit,omitempty"`
	// CommitTime is the revision's time (RFC 3339).
	CommitTime string `json:"commit_time,omitempty"`
	// Dirty: the working tree had changes not in Commit.
	Dirty     bool   `json:"dirty"`
	GoVersion string `json:"go_version"`
}

// readVersion reads the version stamped into the binary by the go command.
func readVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "(devel)", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Dirty = s.Value == "true"
		}
	}
	return v
}

// String is the one line of "pgtrail version".
func (v versionInfo) String() string {
	s := "pgtrail " + v.Version
	switch {
	case v.Commit == "":
		s += " (commit unknown"
	case len(v.Commit) > 12:
		s += " (commit " + v.Commit[:12]
	default:
		s += " (commit " + v.Commit
	}
	if v.CommitTime != "" {
		s += " " + v.CommitTime
	}
	if v.Dirty {
		s += ", dirty"
	}
	return s + ", " + v.GoVersion + ")"
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "version [--json]\n\nThe module version and the VCS commit the binary was built from (\"dirty\": with uncommitted\nchanges); \"(devel)\" and \"commit unknown\" when the go command did not record them.")
	asJSON := fs.Bool("json", false, "print the version as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Errorf("unexpected argument %q", pos[0]))
	}
	v := readVersion(debug.ReadBuildInfo())
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(v)
	}
	fmt.Fprintln(e.stdout, v)
	return nil
}
