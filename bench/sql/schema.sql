-- The application tables of the write benchmark. The harness fills accounts with
-- generate_series (see bench/write.go) and copies this database for every run.
CREATE TABLE accounts (
  id         bigint PRIMARY KEY,
  owner      text NOT NULL,
  balance    numeric NOT NULL,
  email      text NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE payments (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL,
  amount     numeric NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE EXTENSION IF NOT EXISTS pg_prewarm;
