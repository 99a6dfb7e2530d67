// Package hostile is pgtrail's hostile-roles suite: one table of attacks (issue 15's table,
// capture v2's routes, the other rows of docs/design.md's threat model), each tried end to end as
// the role that can make it — the application, pgtrail_reader, a tenant reader, the auditor, a
// member of pgtrail_owner, a table's owner, a superuser, someone who writes files in a file://
// archive, any caller of the CLI — against a real PostgreSQL cluster, a real archive and the
// real pgtrail binary, and checked for the outcome a user relies on:
//
//   - refused: PostgreSQL refuses the statement, or the CLI exits with its code and a one-line
//     message;
//   - caught: `pgtrail verify db|all --json`, run afterwards, exits 1 and names the problem's
//     kind;
//   - recorded: the act, or the change made after it, is an entry of the chain (and of the
//     archive, where the case says so) and the trail still verifies;
//   - contained: an input without end or far too big ends in a one-line error and an exit code
//     within a bounded amount of memory (the process runs under a data-size limit);
//   - withheld: what the role reads back holds the rest of the trail but not the value it was
//     after (PII, a planted file's rows, a forged actor, another tenant's rows).
//
// The package has no code of its own; it is the place where the next attack found is added.
// The table is in hostile_test.go; world_test.go gives each case a world of its own (a fresh
// database with its own replication slot, an archive directory, key pairs, a login role made the
// role named); cli_test.go runs the binary; outcome_test.go checks the outcomes.
//
// To add an attack: write it as a func(*world) result that does what the role would, as that
// role (world.tryAs and world.as for SQL, world.run with the role's URL for the CLI, files in
// world.archiveDir for the archive writer), and add a case naming the role, the route as a
// user would word it, and the outcome. Say in its comment what was tried and what must survive,
// and check what survives in its survives func where that is cheap. A case must fail on the code
// before the fix: never one that asserts only that nothing went wrong. A route found open and
// not fixed yet gets a hole mark saying what happens instead: the case is skipped with it, and
// fails once the outcome holds, so that the mark goes.
package hostile
