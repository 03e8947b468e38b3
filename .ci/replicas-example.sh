#!/usr/bin/env bash
# examples/replicas.rs against a private primary and a streaming replica of
# it (pg_basebackup -R), both on free loopback ports, both stopped and
# removed at the end, also on failure. Checks that no read was stale and
# that the replica answered reads; then once more without replicas. Called by .ci/run; runs on its own too
# (as root or as a user who can run initdb), given the server binaries in
# BINDIR or found as .ci/run finds them.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -z "${BINDIR:-}" ]; then
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/pg_basebackup" ]; then
        BINDIR=$(pg_config --bindir)
    else
        BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r | head -1)
    fi
fi
[ -x "$BINDIR/pg_basebackup" ] || { echo "no PostgreSQL server binaries (pg_basebackup) found" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ROOT=$(mktemp -d /tmp/voidrunner-ci-replicas.XXXXXX)
chmod 755 "$ROOT"
[ "$(id -u)" = 0 ] && chown postgres: "$ROOT"
cleanup() {
    for data in "$ROOT/replica" "$ROOT/primary"; do
        [ -f "$data/postmaster.pid" ] &&
            as_postgres "$BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$ROOT"
}
trap cleanup EXIT

# fsync off: a throwaway pair need not survive a power cut.
server_options() { # port
    echo "-p $1 -k $ROOT -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
}

PRIMARY_PORT=$(free_port)
log "replicas example: a primary on port $PRIMARY_PORT"
# initdb's default pg_hba.conf lets local replication connections in with
# trust; wal_level is replica by default.
as_postgres "$BINDIR/initdb" -D "$ROOT/primary" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
as_postgres "$BINDIR/pg_ctl" -D "$ROOT/primary" -l "$ROOT/primary.log" -w -t 60 \
    -o "$(server_options "$PRIMARY_PORT")" start >/dev/null

REPLICA_PORT=$(free_port)
log "replicas example: a streaming replica on port $REPLICA_PORT"
as_postgres "$BINDIR/pg_basebackup" -D "$ROOT/replica" -R -X stream --checkpoint=fast --no-sync \
    -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres
as_postgres "$BINDIR/pg_ctl" -D "$ROOT/replica" -l "$ROOT/replica.log" -w -t 60 \
    -o "$(server_options "$REPLICA_PORT")" start >/dev/null

log "replicas example: cargo run --all-features --example replicas"
OUT="$ROOT/example.out"
status=0
DATABASE_URL="postgres://postgres@127.0.0.1:$PRIMARY_PORT/postgres" \
    VOIDRUNNER_DB_REPLICAS="postgres://postgres@127.0.0.1:$REPLICA_PORT/postgres" \
    cargo run --quiet --all-features --example replicas -- --secs 5 | tee "$OUT" || status=$?
if [ "$status" != 0 ]; then
    echo "the replicas example failed (exit $status)" >&2
    exit 1
fi
grep -qx 'stale reads: 0' "$OUT" || { echo "no 'stale reads: 0' line" >&2; exit 1; }
awk '$2 == "replica" && $NF > 0 { served = 1 } END { exit !served }' "$OUT" ||
    { echo "the replica served no reads" >&2; exit 1; }
log "replicas example: no stale reads, the replica served reads"

log "replicas example without replicas: every read on the primary"
DATABASE_URL="postgres://postgres@127.0.0.1:$PRIMARY_PORT/postgres" VOIDRUNNER_DB_REPLICAS= \
    cargo run --quiet --all-features --example replicas -- --secs 1 | tee "$OUT" || status=$?
if [ "$status" != 0 ]; then
    echo "the replicas example failed without replicas (exit $status)" >&2
    exit 1
fi
grep -qx 'stale reads: 0' "$OUT" || { echo "no 'stale reads: 0' line" >&2; exit 1; }
grep -q '^replicas: *none' "$OUT" || { echo "it did not say it runs without replicas" >&2; exit 1; }
