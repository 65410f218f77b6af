# Installs what Nodebase's build and tests need, only where it is missing.
# Sourced by scripts/run and scripts/test; every function is safe to call again.

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

say() { printf '\n==> %s\n' "$*"; }

apt_install() {
  say "installing Debian packages: $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" ||
    { $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }
}

# The WASM target, cargo-leptos, and the wasm-bindgen CLI matching Cargo.lock exactly.
ensure_rust_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -qx 'cargo-leptos 0.3.10'; then
    # Newer releases need a newer rustc than this machine's.
    say "installing cargo-leptos 0.3.10 (about 18 minutes on 2 cores)"
    cargo install cargo-leptos@0.3.10 --locked
  fi
  local want
  want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
  if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $want"; then
    say "installing wasm-bindgen-cli $want (must match the crate exactly)"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

# wasm-opt 116 for cargo-leptos's release build, from npm's binaryen@116.0.0 (a Node
# program; installs in seconds where the crates.io build takes 11 minutes). Debian's
# wasm-opt 108 yields a WASM that fails to hydrate; the browser tests run once on a
# release build to catch a bad optimizer.
BINARYEN_DIR="$PWD/target/tools/binaryen"
ensure_wasm_opt() {
  if ! wasm-opt --version 2>/dev/null | grep -q 'version 116'; then
    if ! "$BINARYEN_DIR/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q 'version 116'; then
      say "installing wasm-opt 116 (npm binaryen@116.0.0)"
      mkdir -p "$BINARYEN_DIR"
      npm install --no-audit --no-fund --prefix "$BINARYEN_DIR" binaryen@116.0.0
    fi
    export PATH="$BINARYEN_DIR/node_modules/.bin:$PATH"
  fi
}

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
  fi
}

ensure_npm_packages() {
  say "installing the end-to-end test packages"
  (cd end2end && npm ci --no-audit --no-fund)
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

# A running local PostgreSQL with a `nodebase` role that may create databases; exports
# NODEBASE_PG_URL and NODEBASE_TEST_PG_CLUSTER. Fails loudly if it cannot be used.
ensure_postgres() {
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  local cluster status
  cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1 " " $2}')
  status=$(pg_lsclusters -h | awk 'NR==1 {print $4}')
  if [ "$status" != online ]; then
    say "starting PostgreSQL $cluster"
    # shellcheck disable=SC2086
    $SUDO pg_ctlcluster $cluster start
  fi
  if ! as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'nodebase'" | grep -q 1; then
    as_postgres psql -v ON_ERROR_STOP=1 -c "CREATE ROLE nodebase LOGIN PASSWORD 'nodebase' CREATEDB"
  fi
  if ! as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'nodebase'" | grep -q 1; then
    as_postgres psql -v ON_ERROR_STOP=1 -c "CREATE DATABASE nodebase OWNER nodebase"
  fi
  # Databases left by earlier browser-test runs (the Rust tests sweep their own).
  for db in $(as_postgres psql -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'nodebase_e2e_%'"); do
    as_postgres dropdb --if-exists "$db"
  done
  export NODEBASE_PG_URL="postgres://nodebase:nodebase@127.0.0.1:5432/nodebase"
  export NODEBASE_TEST_PG_CLUSTER="$cluster"
  PGPASSWORD=nodebase psql -h 127.0.0.1 -U nodebase -d nodebase -tAc 'SELECT 1' >/dev/null ||
    { echo "error: PostgreSQL is not usable at $NODEBASE_PG_URL" >&2; exit 1; }
}
