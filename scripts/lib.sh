# Shared set-up for ./scripts/dev and ./scripts/test: installs what is missing and starts the
# services the project needs, reusing what is already there. Source it; do not run it.
#
# After `chronicle_setup`, these are exported:
#   CHRONICLE_ADMIN_URL  a Postgres URL with the right to create databases
#   KAFKA_BROKERS        bootstrap servers of a Kafka-protocol broker
# and ./scripts/test also calls `ensure_tansu` (TANSU_BIN: a Tansu binary; its tests start private
# brokers with it) and installs Chromium and chromedriver (CHROMIUM_BIN) for the browser test.

set -euo pipefail

CHRONICLE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHRONICLE_STATE="${CHRONICLE_STATE_DIR:-/var/tmp/chronicle}"
TANSU_VERSION="0.6.0"
PRIVATE_PG_PORT="${CHRONICLE_PRIVATE_PG_PORT:-54329}"
mkdir -p "$CHRONICLE_STATE"

log() { printf '\033[1;34m[chronicle]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[chronicle]\033[0m %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "missing packages: $*; install them (apt-get install $*) or run as root"
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Build needs of the bundled librdkafka (make, a C/C++ compiler) and of its TLS/zlib support;
# the openssl command makes the certificates of the TLS tests.
ensure_build_deps() {
  local missing=()
  for pkg in build-essential pkg-config libssl-dev zlib1g-dev openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
  command -v cargo >/dev/null || die "cargo is not installed: install Rust with rustup first"
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

# sqlx-cli, which writes and checks .sqlx/ (the schema facts query! macros compile against);
# the version is sqlx's own. Kept under /var/tmp/chronicle, beside the other tools.
SQLX_CLI_ROOT="${SQLX_CLI_ROOT:-/var/tmp/chronicle/sqlx-cli}"
ensure_sqlx_cli() {
  if ! "$SQLX_CLI_ROOT/bin/sqlx" --version >/dev/null 2>&1; then
    log "installing sqlx-cli 0.8.6 (about 3 minutes, once)"
    cargo install sqlx-cli --version 0.8.6 --locked --no-default-features \
      --features postgres,native-tls --root "$SQLX_CLI_ROOT"
  fi
  export PATH="$SQLX_CLI_ROOT/bin:$PATH"
}

# A database with every migration applied, for sqlx-cli to describe statements against
# (chronicle_sqlx, recreated so no earlier run's schema survives); prints its URL.
sqlx_database() {
  psql "$CHRONICLE_ADMIN_URL" -qc 'DROP DATABASE IF EXISTS chronicle_sqlx WITH (FORCE)' >/dev/null
  local url
  url="$(ensure_database chronicle_sqlx)"
  DATABASE_URL="$url" sqlx migrate run --source "$CHRONICLE_ROOT/migrations" >/dev/null
  echo "$url"
}

# Tansu: a Kafka-protocol broker built from crates.io; cached in cargo's bin directory. Building
# it takes about 10 minutes, so only its users call this: ./scripts/test (private brokers), and
# ensure_kafka when it has to start the shared broker.
ensure_tansu() {
  local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  if [ -x "$cargo_bin/tansu" ]; then
    TANSU_BIN="$cargo_bin/tansu"
  elif command -v tansu >/dev/null; then
    TANSU_BIN="$(command -v tansu)"
  else
    log "installing tansu $TANSU_VERSION (about 10 minutes, once)"
    cargo install tansu --version "$TANSU_VERSION" --features dynostore,postgres --locked
    TANSU_BIN="$cargo_bin/tansu"
  fi
  export TANSU_BIN
}

# The checkers of the deployment files, since no Docker engine may run where the tests do:
# check-jsonschema (the Compose Specification's schema is built in) in a virtualenv of its own,
# and promtool (Debian's prometheus package; its daemon is not started).
CHECK_JSONSCHEMA_VERSION="0.39.0"
ensure_deploy_checkers() {
  local venv="$CHRONICLE_STATE/venv"
  if ! "$venv/bin/check-jsonschema" --version 2>/dev/null | grep -q "$CHECK_JSONSCHEMA_VERSION"; then
    log "installing check-jsonschema $CHECK_JSONSCHEMA_VERSION"
    # Debian and Ubuntu leave ensurepip out of python3 (`python3 -m venv` then fails with
    # "ensurepip is not available") until python3-venv, which pulls the python3.X-venv of the
    # installed python3, is installed. It also pulls python3 itself where that is missing.
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    # --clear: start from an empty venv, so that what a failed earlier attempt left there (say,
    # a venv without pip, or one of a python3 since removed) does not break this one.
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  fi
  export CHECK_JSONSCHEMA="$venv/bin/check-jsonschema"
  command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
}

# Headless Chromium and chromedriver for the GraphiQL browser test (Debian's packages).
ensure_browser() {
  if ! command -v chromedriver >/dev/null || ! [ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
    apt_install chromium chromium-driver
  fi
  export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
}

# PgBouncer, Patroni, etcd and HAProxy for the pooler and failover tests (Debian's packages;
# the tests start their own on free ports). Transaction pooling needs PgBouncer 1.21 or later
# (max_prepared_statements) and Debian 12 ships 1.18: the newer one is built once from Debian
# 13's source (its checksum checked) into $CHRONICLE_STATE, as PGBOUNCER_BIN.
PGBOUNCER_VERSION="1.24.1"
PGBOUNCER_SHA256="da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0"
ensure_ha_tools() {
  local missing=()
  [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  command -v patroni >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
  ensure_transaction_pgbouncer
}

ensure_transaction_pgbouncer() {
  local prefix="$CHRONICLE_STATE/pgbouncer-$PGBOUNCER_VERSION"
  if [ ! -x "$prefix/bin/pgbouncer" ]; then
    local missing=()
    for package in curl libevent-dev libc-ares-dev libssl-dev pkg-config make gcc; do
      dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
    log "building PgBouncer $PGBOUNCER_VERSION from Debian's source (about a minute, once)"
    local work
    work="$(mktemp -d)"
    local tarball="pgbouncer_$PGBOUNCER_VERSION.orig.tar.gz"
    curl -fsSL -o "$work/$tarball" "http://deb.debian.org/debian/pool/main/p/pgbouncer/$tarball"
    echo "$PGBOUNCER_SHA256  $work/$tarball" | sha256sum -c --quiet
    tar -xzf "$work/$tarball" -C "$work"
    (cd "$work/pgbouncer-$PGBOUNCER_VERSION" \
      && ./configure --prefix="$prefix" --without-systemd >/dev/null \
      && make -j"$(nproc)" >/dev/null && make install >/dev/null)
    rm -rf "$work"
  fi
  export PGBOUNCER_BIN="$prefix/bin/pgbouncer"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_port() {
  local host="$1" port="$2" what="$3"
  for _ in $(seq 1 100); do
    port_open "$host" "$port" && return 0
    sleep 0.2
  done
  die "$what did not start listening on $host:$port"
}

# Postgres: DATABASE_URL's server if set; else a server on 127.0.0.1:5432 if one answers; else a
# private cluster initialised (as the postgres user when running as root) and started here.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    CHRONICLE_ADMIN_URL="${CHRONICLE_ADMIN_URL:-$DATABASE_URL}"
  elif port_open 127.0.0.1 5432; then
    CHRONICLE_ADMIN_URL="${CHRONICLE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  else
    start_private_postgres
    CHRONICLE_ADMIN_URL="postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT/postgres"
  fi
  command -v psql >/dev/null || apt_install postgresql-client
  psql "$CHRONICLE_ADMIN_URL" -qAtc 'SELECT 1' >/dev/null \
    || die "cannot connect to Postgres at $CHRONICLE_ADMIN_URL"
  export CHRONICLE_ADMIN_URL
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_private_postgres() {
  local bindir
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$bindir" ]; then
    apt_install postgresql
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  local data="$CHRONICLE_STATE/pg"
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initialising a private Postgres cluster in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$CHRONICLE_STATE" "$data"
    as_postgres "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null
  fi
  if ! port_open 127.0.0.1 "$PRIVATE_PG_PORT"; then
    log "starting the private Postgres on 127.0.0.1:$PRIVATE_PG_PORT"
    as_postgres "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $PRIVATE_PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  fi
  wait_for_port 127.0.0.1 "$PRIVATE_PG_PORT" "Postgres"
}

# The broker: KAFKA_BROKERS if set; else whatever answers on 127.0.0.1:9092; else Tansu, installed
# only here, where it is started (a given or answering broker needs no 10-minute build).
ensure_kafka() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    export KAFKA_BROKERS
    return
  fi
  KAFKA_BROKERS="127.0.0.1:9092"
  if ! port_open 127.0.0.1 9092; then
    ensure_tansu
    log "starting Tansu on 127.0.0.1:9092 (log: $CHRONICLE_STATE/tansu.log)"
    nohup "$TANSU_BIN" broker \
      --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 \
      >"$CHRONICLE_STATE/tansu.log" 2>&1 &
    wait_for_port 127.0.0.1 9092 "Tansu"
  fi
  export KAFKA_BROKERS
}

# Creates database $1 on the admin server if missing and prints its URL.
ensure_database() {
  local name="$1"
  local exists
  # The URL is rewritten with python3, which a minimal image may lack.
  command -v python3 >/dev/null || apt_install python3
  exists="$(psql "$CHRONICLE_ADMIN_URL" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$name'")"
  [ "$exists" = 1 ] || psql "$CHRONICLE_ADMIN_URL" -qc "CREATE DATABASE \"$name\"" >/dev/null
  # Replace the database part of the admin URL (keeps user, host, port and parameters).
  python3 - "$CHRONICLE_ADMIN_URL" "$name" <<'PY'
import sys, urllib.parse as u
url, name = sys.argv[1], sys.argv[2]
p = u.urlsplit(url)
print(u.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment)))
PY
}

chronicle_setup() {
  ensure_build_deps
  ensure_postgres
  ensure_kafka
  # Tansu answers a consumer's fetch only when fetch.wait.max.ms has passed, not when a record
  # arrives as Apache Kafka does; the default 500 ms would then delay every read model by up to
  # half a second. Locally, short fetches cost nothing. (Apache Kafka: leave the default.)
  export KAFKA_FETCH_WAIT_MAX_MS="${KAFKA_FETCH_WAIT_MAX_MS:-10}"
}
