package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail/internal/bytesize"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// flagSet is a command's flags: a flag.FlagSet that prints its help (with examples) on --help
// only, and turns every mistake into one line that says where the help is.
type flagSet struct {
	*flag.FlagSet
	e *env
	// synopsis is the usage line after "pgtrail "; about is the text under it.
	synopsis, about string
}

// newFlagSet returns the flag set of the command name ("stream", "verify db"). usage is its
// synopsis ("stream --archive URL [flags]"), optionally followed by a blank line and a
// description; the examples come from examples[name].
func newFlagSet(e *env, name, usage string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // parse prints the help, on --help only
	synopsis, about, _ := strings.Cut(usage, "\n")
	return &flagSet{FlagSet: fs, e: e, synopsis: synopsis, about: strings.TrimSpace(about)}
}

// errParsedOnly stops a command once its command line is parsed, when env.parseOnly is set:
// the README test checks every example's flags without running anything.
var errParsedOnly = errors.New("parsed only")

// parse parses flags, allowing them after positional arguments too ("enable t --exclude-columns
// x"). Every duration flag reads timeexpr durations (90d, 13mo, 7y, 500ms) and every integer
// flag named *-bytes reads sizes (64MiB, 1GiB, 512KB), whichever way it was declared. --help
// prints the help to stdout and returns flag.ErrHelp; a mistake is a usage error.
func parse(fs *flagSet, args []string) ([]string, error) {
	fs.upgrade()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp(fs.e.stdout)
				return nil, err
			}
			return nil, fs.usageError(flagError(err))
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if fs.e.parseOnly {
		return pos, errParsedOnly
	}
	return pos, nil
}

// usageError is err as a mistake on the command line: exit 2, one line, ending with where the
// help of this command is.
func (fs *flagSet) usageError(err error) error {
	return usageError("pgtrail "+fs.Name()+" --help", err)
}

// usageError marks err as a usage error whose help is the command line help.
func usageError(help string, err error) error {
	return &exitError{code: exitNotRun, err: err, help: help}
}

// flagErrorPatterns rewrite the flag package's messages into pgtrail's: flags written as the
// README writes them (--flag), and what would work.
var flagErrorPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`^flag provided but not defined: -+(.*)$`), "unknown flag --$1"},
	{regexp.MustCompile(`^flag needs an argument: -+(.*)$`), "--$1 needs a value"},
	{regexp.MustCompile(`(?s)^invalid boolean value (".*") for -+([^:\s]+): .*$`), "--$2 takes no value (or =true, =false), not $1"},
	{regexp.MustCompile(`(?s)^invalid value ".*" for flag -+([^:\s]+): (.*)$`), "--$1: $2"},
}

func flagError(err error) error {
	msg := err.Error()
	for _, p := range flagErrorPatterns {
		if p.re.MatchString(msg) {
			return errors.New(p.re.ReplaceAllString(msg, p.repl))
		}
	}
	return err
}

// upgrade makes every duration flag read timeexpr durations, every integer flag named *-bytes
// read sizes, and integer flags say what they want; declared with fs.Duration or fs.Int like
// any flag, they all read the same forms.
func (fs *flagSet) upgrade() {
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.Get().(type) {
		case time.Duration:
			if _, done := f.Value.(durationFlag); !done {
				f.Value = durationFlag{g}
			}
		case int, int64:
			if _, done := f.Value.(sizeFlag); done {
				return
			}
			if _, done := f.Value.(intFlag); done {
				return
			}
			if strings.HasSuffix(f.Name, "-bytes") {
				f.Value = sizeFlag{g}
			} else {
				f.Value = intFlag{g}
			}
		}
	})
}

// durationFlag reads a duration with timeexpr.ParseDuration into the flag.Value it wraps.
type durationFlag struct{ inner flag.Getter }

func (d durationFlag) Set(s string) error {
	v, err := timeexpr.ParseDuration(s)
	if err != nil {
		return err
	}
	return d.inner.Set(v.String())
}
func (d durationFlag) Get() any { return d.inner.Get() }
func (d durationFlag) String() string {
	if d.inner == nil {
		return ""
	}
	v, _ := d.inner.Get().(time.Duration)
	return timeexpr.FormatDuration(v)
}

// sizeFlag reads a size with bytesize.Parse into the integer flag.Value it wraps.
type sizeFlag struct{ inner flag.Getter }

func (z sizeFlag) Set(s string) error {
	n, err := bytesize.Parse(s)
	if err != nil {
		return err
	}
	if err := z.inner.Set(strconv.FormatInt(n, 10)); err != nil {
		return fmt.Errorf("size %q: too large", s)
	}
	return nil
}
func (z sizeFlag) Get() any { return z.inner.Get() }
func (z sizeFlag) String() string {
	if z.inner == nil {
		return ""
	}
	return bytesize.Format(asInt64(z.inner.Get()))
}

// intFlag is an integer flag whose error says what it wants.
type intFlag struct{ inner flag.Getter }

func (i intFlag) Set(s string) error {
	if err := i.inner.Set(s); err != nil {
		return fmt.Errorf("want a whole number, not %q", s)
	}
	return nil
}
func (i intFlag) Get() any { return i.inner.Get() }
func (i intFlag) String() string {
	if i.inner == nil {
		return ""
	}
	return fmt.Sprint(i.inner.Get())
}

func asInt64(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	}
	return 0
}

// placeholders name the value of string flags in the help.
var placeholders = map[string]string{
	"archive": "URL", "database-url": "URL", "s3-endpoint": "URL", "alert-webhook": "URL",
	"public-key": "PATH", "signing-key": "PATH", "checkpoint-file": "PATH", "out": "PATH", "rules": "PATH",
	"region": "REGION", "slot": "NAME", "publication": "NAME", "database": "NAME", "table": "NAME",
	"requested-by": "NAME", "lock-mode": "COMPLIANCE|GOVERNANCE", "mode": "wal|trigger",
	"log-format": "text|json", "format": "csv|parquet", "sse-kms-key": "KEY_ID", "metrics-addr": "ADDR",
	"exclude-columns": "COLUMNS", "pii-columns": "COLUMNS", "retention": "DURATION",
	"glacier-after": "DURATION", "older-than": "AGE", "since": "TIME", "until": "TIME",
	"actor": "ACTOR", "resource": "TYPE[:ID]", "action": "TYPES", "outcome": "OUTCOME",
	"tenant": "TENANT", "tenants": "LIST", "reason": "TEXT",
}

// printHelp writes the command's help: usage, description, flags as --flag VALUE, examples.
func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: pgtrail %s\n", fs.synopsis)
	if fs.about != "" {
		fmt.Fprintf(w, "\n%s\n", fs.about)
	}
	var sizes, durations bool
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if n == 0 {
			fmt.Fprint(w, "\nFlags:\n")
		}
		n++
		arg, def := "", f.DefValue
		switch f.Value.(type) {
		case durationFlag:
			arg, durations = "DURATION", true
			if d, err := time.ParseDuration(def); err == nil {
				def = timeexpr.FormatDuration(d)
			}
		case sizeFlag:
			arg, sizes = "SIZE", true
			if b, err := strconv.ParseInt(def, 10, 64); err == nil {
				def = bytesize.Format(b)
			}
		case intFlag:
			arg = "N"
		default:
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				if def == "false" {
					def = ""
				}
				break
			}
			if arg = placeholders[f.Name]; arg == "" {
				arg = "VALUE"
			}
			if arg == "DURATION" || arg == "AGE" {
				durations = true
			}
		}
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		if arg != "" {
			arg = " " + arg
		}
		fmt.Fprintf(w, "  %s%s%s\n", dash, f.Name, arg)
		usage := f.Usage
		if def != "" && def != "0" && def != "0s" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "      %s\n", usage)
	})
	if ex := examples[fs.Name()]; len(ex) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, x := range ex {
			fmt.Fprintf(w, "  %s\n", x)
		}
	}
	if sizes || durations {
		fmt.Fprintln(w)
	}
	if sizes {
		fmt.Fprintln(w, "Sizes: 64MiB, 1GiB, 512KiB (powers of 1024), 512KB, 10MB (powers of 1000), or bytes.")
	}
	if durations {
		fmt.Fprintln(w, "Durations: 500ms, 30s, 10m, 36h, 90d, 2w, 13mo (31 days), 7y (366 days), or combined: 1d12h.")
	}
	if fs.Lookup("database-url") != nil {
		fmt.Fprintln(w, "\nThe database: --database-url, else DATABASE_URL, else the libpq PG* variables (PGHOST, PGDATABASE, ...).")
	}
}
