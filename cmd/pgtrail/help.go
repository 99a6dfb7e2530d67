package main

import (
	"context"
	"fmt"
)

// examples are the command lines each command's help shows, by flag set name. A test parses
// every one of them (TestHelp_ExamplesParse), as it does the README's.
var examples = map[string][]string{
	"migrate": {
		"pgtrail migrate up",
		"pgtrail migrate version --json",
		"pgtrail migrate to 7",
		"pgtrail migrate down --force-destroy-audit-data",
	},
	"enable": {
		"pgtrail enable public.accounts",
		"pgtrail enable users --exclude-columns password_hash --pii-columns email,phone",
		"pgtrail enable payments --mode trigger",
	},
	"disable": {
		"pgtrail disable public.accounts",
	},
	"status": {
		"pgtrail status",
		"pgtrail status --json --database-url postgres://auditor@db.example.com/app",
	},
	"seal": {
		"pgtrail seal --once",
		"pgtrail seal --interval 200ms --batch 50000",
	},
	"stream": {
		"pgtrail stream --archive s3://audit-bucket/app --signing-key /etc/pgtrail/signing.key --metrics-addr :9187",
		"pgtrail stream --archive file:///var/lib/pgtrail/archive --signing-key signing.key --batch-bytes 64MiB --wal-warn-bytes 1GiB",
		"pgtrail stream --archive s3://audit-bucket/app --signing-key signing.key --retention 7y --rules alerts.yaml",
	},
	"verify db": {
		"pgtrail verify db",
		"pgtrail verify db --json --max-capture-lag 10m",
		"pgtrail verify db --signing-key /etc/pgtrail/verify.key --since-checkpoint",
	},
	"verify archive": {
		"pgtrail verify archive s3://audit-bucket/app --public-key signing.key.pub",
		"pgtrail verify archive file:///var/lib/pgtrail/archive --public-key signing.key.pub --signing-key verify.key --checkpoint-file /var/lib/pgtrail/checkpoint.json --since-checkpoint",
	},
	"verify all": {
		"pgtrail verify all s3://audit-bucket/app --public-key signing.key.pub",
		"pgtrail verify all s3://audit-bucket/app --public-key signing.key.pub --signing-key verify.key --since-checkpoint --alert-webhook https://hooks.example.com/pgtrail",
		"pgtrail verify all file:///var/lib/pgtrail/archive --public-key signing.key.pub --archive-lag 1h",
	},
	"version": {
		"pgtrail version",
		"pgtrail --version",
		"pgtrail version --json",
	},
	"keygen": {
		"pgtrail keygen --out /etc/pgtrail/signing.key",
	},
	"archive init": {
		"pgtrail archive init s3://audit-bucket/app --retention 7y --glacier-after 90d",
		"pgtrail archive init s3://audit/app --s3-endpoint http://localhost:7070 --lock-mode GOVERNANCE --retention 30d --glacier-after 0",
		"pgtrail archive init file:///var/lib/pgtrail/archive",
	},
	"athena": {
		"pgtrail athena ddl s3://audit-bucket/app",
		"pgtrail athena ddl s3://audit-bucket/app --database audit --table events --tenants acme,globex",
	},
	"search": {
		"pgtrail search --actor alice --since 30d",
		"pgtrail search --resource public.users:42 --action UPDATE,DELETE --newest-first --limit 20",
		"pgtrail search --archive s3://audit-bucket/app --tenant acme --since 2024-01-01 --until 2024-02-01 --csv",
	},
	"export": {
		"pgtrail export --out report.csv --actor alice --since 90d --reason 'ticket 1234'",
		"pgtrail export --out q1.parquet --since 2024-01-01 --until 2024-04-01 --archive s3://audit-bucket/app --requested-by legal",
	},
	"partitions list": {
		"pgtrail partitions list",
		"pgtrail partitions list --json",
	},
	"partitions prune": {
		"pgtrail partitions prune --older-than 13mo --archive s3://audit-bucket/app --dry-run",
		"pgtrail partitions prune --older-than 13mo --archive s3://audit-bucket/app --signing-key /etc/pgtrail/signing.key",
	},
}

// subcommand is one of a command's subcommands (archive init, partitions prune, verify db).
type subcommand struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

// printGroupHelp writes the help of a command made of subcommands: its usage, each subcommand
// in a line, then each one's help (usage, flags, examples) when full, else where to find it.
func printGroupHelp(ctx context.Context, e *env, usage string, subs []subcommand, full bool) {
	fmt.Fprintf(e.stdout, "Usage: pgtrail %s\n\nCommands:\n", usage)
	for _, s := range subs {
		fmt.Fprintf(e.stdout, "  %-8s %s\n", s.name, s.summary)
	}
	if !full {
		for _, s := range subs {
			fmt.Fprintf(e.stdout, "\nExamples of %s:\n", s.name)
			for _, x := range examples[commandOf(usage)+" "+s.name] {
				fmt.Fprintf(e.stdout, "  %s\n", x)
			}
		}
		fmt.Fprintf(e.stdout, "\nRun \"pgtrail %s SUBCOMMAND --help\" for a subcommand's flags.\n", commandOf(usage))
		return
	}
	for _, s := range subs {
		fmt.Fprintf(e.stdout, "\n--- %s %s ---\n", commandOf(usage), s.name)
		s.run(ctx, e, []string{"--help"})
	}
}

// commandOf is the first word of a usage line.
func commandOf(usage string) string {
	for i, c := range usage {
		if c == ' ' {
			return usage[:i]
		}
	}
	return usage
}

// findSubcommand returns the subcommand named name, or nil.
func findSubcommand(subs []subcommand, name string) *subcommand {
	for i := range subs {
		if subs[i].name == name {
			return &subs[i]
		}
	}
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}
