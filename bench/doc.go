// Package bench measures pgtrail against the alternatives, side by side in one run, on a throwaway
// PostgreSQL cluster it starts itself (fsync and synchronous_commit on):
//
//  1. write overhead: pgbench TPS, latency and WAL per transaction with no audit, pgaudit, a plain
//     row trigger, a naive hash chain and pgtrail (with its sealer running);
//  2. stream: `pgtrail stream` draining a backlog into the file and S3 sinks against pg_recvlogical
//     on the same WAL, its peak memory, and the commit-to-durable lag at a steady rate;
//  3. verification: `pgtrail verify db` and `verify archive` against raw SHA-256 chaining.
//
// Run drives the pgtrail binary as a user would and writes Markdown tables to bench/results.
// make bench runs the full configuration (Full); make bench-smoke runs every part with tiny sizes
// (Smoke) to keep the harness working. Only ratios within one run are meaningful on a shared
// machine; tests in this package never time anything.
package bench
