package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADME_ExamplesParse runs every pgtrail command line of README.md and docs/*.md through
// pgtrail's flag parser, without running it, so that the documents and the CLI cannot drift:
//   - command lines in code blocks parse as they are written;
//   - `pgtrail …` synopses in the text name only flags their command has, and the values they
//     give (not placeholders such as URL) parse;
//   - `--flag value` spans in a "### pgtrail COMMAND" section parse as that command's flags.
func TestREADME_ExamplesParse(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append([]string{"../../README.md"}, docs...)
	total := 0
	for _, path := range docs {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		for _, c := range docCommands(string(src)) {
			total++
			if err := checkDocCommand(t, c); err != nil {
				t.Errorf("%s:%d: %s: %v", name, c.line, c.text, err)
			}
		}
	}
	if total < 20 {
		t.Errorf("found %d pgtrail command lines in the README and docs; the extraction is broken", total)
	}
}

// docCommand is a pgtrail command line, or a flag span, found in a document.
type docCommand struct {
	line int
	text string
	// synopsis: written in the text, with placeholders and alternatives (`verify db\|all URL`).
	synopsis bool
	// command is the command a flag span belongs to (its section); "" for a command line.
	command string
}

var (
	inlineCode = regexp.MustCompile("`([^`]+)`")
	heading    = regexp.MustCompile(`^#+\s+pgtrail (\w+)`)
)

// docCommands finds the pgtrail command lines of a Markdown document.
func docCommands(src string) []docCommand {
	var found []docCommand
	lines := strings.Split(src, "\n")
	fenced := false
	text := make([]string, len(lines)) // the lines outside code blocks, for the inline spans
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		code := fenced || strings.HasPrefix(l, "    ") || strings.HasPrefix(l, "\t")
		if !code {
			text[i] = l
			continue
		}
		cmd := strings.TrimPrefix(strings.TrimSpace(l), "$ ")
		if first, _, _ := strings.Cut(strings.TrimPrefix(cmd, "pgtrail "), " "); !strings.HasPrefix(cmd, "pgtrail ") || strings.HasSuffix(first, ":") {
			continue // not a command line, or pgtrail's output ("pgtrail stream: ...")
		}
		start := i
		for strings.HasSuffix(strings.TrimSpace(stripComment(cmd)), "\\") && i+1 < len(lines) {
			cmd = strings.TrimSuffix(strings.TrimSpace(stripComment(cmd)), "\\") + " " + strings.TrimSpace(lines[i+1])
			i++
		}
		found = append(found, docCommand{line: start + 1, text: strings.TrimSpace(stripComment(cmd))})
	}
	section := ""
	joined := strings.Join(text, "\n")
	for i, l := range text {
		if m := heading.FindStringSubmatch(l); m != nil {
			section = m[1]
		} else if strings.HasPrefix(l, "#") {
			section = ""
		}
		// A span may run onto the next line: match from this line's start on, keep those
		// starting here.
		offset := len(strings.Join(text[:i], "\n"))
		if i > 0 {
			offset++
		}
		rest := joined[offset:]
		for _, m := range inlineCode.FindAllStringSubmatchIndex(rest, -1) {
			if m[0] >= len(l) {
				break
			}
			span := strings.Join(strings.Fields(rest[m[2]:m[3]]), " ")
			switch {
			case strings.HasPrefix(span, "pgtrail "):
				found = append(found, docCommand{line: i + 1, text: span, synopsis: true})
			case section != "" && strings.HasPrefix(span, "-"):
				found = append(found, docCommand{line: i + 1, text: span, synopsis: true, command: section})
			}
		}
	}
	return found
}

// stripComment removes a shell comment: a # after whitespace, outside quotes.
func stripComment(s string) string {
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && i > 0 && (s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// splitCommandLine splits a shell command line into words (quotes and backslashes as sh reads
// them, variables left as written), up to the end of the first command (|, ;, &&, >).
func splitCommandLine(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			w.WriteRune(rs[i])
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, w.String())
	}
	for i, w := range words {
		switch w {
		case "|", "||", "&&", ";", ">", ">>", "2>&1":
			return words[:i], nil
		}
	}
	return words, nil
}

// placeholder matches values a synopsis does not give: URL, KEY, TABLE, a|b, [..], <..>.
var placeholder = regexp.MustCompile(`^([A-Z][A-Z0-9_:\[\]]*|.*\|.*|\[.*|<.*|\.\.\.)$`)

func checkDocCommand(t *testing.T, c docCommand) error {
	t.Helper()
	words, err := splitCommandLine(c.text)
	if err != nil {
		return err
	}
	if c.command == "" && (len(words) < 2 || words[0] != "pgtrail") {
		return fmt.Errorf("not a pgtrail command line")
	}
	if !c.synopsis {
		if code, errOut := parseCLI(t, words[1:]...); code != 0 {
			return fmt.Errorf("exit %d: %s", code, strings.TrimSpace(errOut))
		}
		return nil
	}
	// A synopsis or a flag span: the command, its subcommands, then the flags it names.
	var cmd []string
	if c.command != "" {
		cmd = []string{c.command}
		for s := range subcommandsOf(c.command) {
			cmd = append(cmd, s)
		}
	} else {
		cmd = []string{words[1]}
		words = words[2:]
		if len(words) > 0 && !strings.HasPrefix(words[0], "-") {
			if subs := subcommandsOf(cmd[0]); subs != nil {
				var named []string
				for _, s := range strings.Split(words[0], "|") {
					if subs[s] {
						named = append(named, s)
					}
				}
				if len(named) == 0 {
					for s := range subs {
						named = append(named, s)
					}
				}
				cmd = append(cmd, named...)
			}
		}
	}
	if cmd[0] == "help" || cmd[0] == "--help" || cmd[0] == "--version" {
		return nil // run answers these itself (TestHelp_Content, TestVersion)
	}
	if _, ok := commands[cmd[0]]; !ok {
		return fmt.Errorf("unknown command %q", cmd[0])
	}
	variants := [][]string{cmd}
	if len(cmd) > 1 {
		variants = nil
		for _, s := range cmd[1:] {
			variants = append(variants, []string{cmd[0], s})
		}
	}
	for i, w := range words {
		w = strings.Trim(w, "[],.;:")
		if !strings.HasPrefix(w, "-") || w == "-" || w == "--" || w == "--help" || w == "-h" {
			continue
		}
		flagName, value, hasValue := strings.Cut(w, "=")
		if !hasValue && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") && !strings.HasSuffix(words[i], "]") {
			value, hasValue = strings.Trim(words[i+1], "],.;"), true
		}
		var in []string
		for _, v := range variants {
			if hasFlag(t, v, flagName) {
				in = v
				break
			}
		}
		if in == nil {
			return fmt.Errorf("pgtrail %s has no flag %s", strings.Join(cmd, " "), flagName)
		}
		if !hasValue || placeholder.MatchString(value) || !takesValue(t, in, flagName) {
			continue
		}
		args := append(append([]string{}, in...), flagName, value)
		if code, errOut := parseCLI(t, args...); code != 0 {
			return fmt.Errorf("pgtrail %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errOut))
		}
	}
	return nil
}

// subcommandsOf returns the subcommands of a command made of them, nil for the others.
func subcommandsOf(cmd string) map[string]bool {
	var subs []subcommand
	switch cmd {
	case "verify":
		subs = verifySubcommands
	case "archive":
		subs = archiveSubcommands
	case "partitions":
		subs = partitionsSubcommands
	default:
		return nil
	}
	m := map[string]bool{}
	for _, s := range subs {
		m[s.name] = true
	}
	return m
}

// helpOf returns the help page of a command line (pgtrail verify db --help).
func helpOf(t *testing.T, cmd []string) string {
	t.Helper()
	_, out, _ := runCLI(t, nil, append(append([]string{}, cmd...), "--help")...)
	return out
}

// hasFlag reports whether the help of cmd lists the flag (--name or -v).
func hasFlag(t *testing.T, cmd []string, flagName string) bool {
	return regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(flagName) + `( |$)`).MatchString(helpOf(t, cmd))
}

// takesValue reports whether the flag of cmd takes a value (the help shows one after it).
func takesValue(t *testing.T, cmd []string, flagName string) bool {
	return regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(flagName) + ` \S`).MatchString(helpOf(t, cmd))
}
