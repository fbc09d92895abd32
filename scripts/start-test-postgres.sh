#!/usr/bin/env bash
# Start a throwaway local PostgreSQL for the store tests and print its URL on stdout.
# Prints nothing (and the PostgreSQL tests skip) when it cannot: no apt, not root, no package.
set -u
URL="postgresql+psycopg://dlforge:dlforge@127.0.0.1:5432/dlforge_test"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 || exit 0
  else
    exit 0
  fi
fi
version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$version" ] || exit 0
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null 2>&1 || exit 0
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='dlforge'\"" 2>/dev/null | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE USER dlforge WITH PASSWORD 'dlforge'\"" >&2 || exit 0
# A fresh database every run: nothing from an earlier run (or another owner) leaks into the tests.
su postgres -c "dropdb --if-exists dlforge_test" >&2 || exit 0
su postgres -c "createdb -O dlforge dlforge_test" >&2 || exit 0
echo "$URL"
