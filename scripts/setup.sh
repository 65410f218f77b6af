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

# binaryen 116 from crates.io: Debian's wasm-opt 108 yields a WASM that fails to hydrate.
ensure_wasm_opt() {
  if ! wasm-opt --version 2>/dev/null | grep -q 'version 116'; then
    say "installing wasm-opt 116 (about 11 minutes on 2 cores)"
    cargo install wasm-opt --version 0.116.1 --locked
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
