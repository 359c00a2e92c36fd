# shellcheck shell=bash
# Shared by scripts/serve.sh and scripts/test.sh (sourced, bash): find cargo and check that its
# Rust is at least Cargo.toml's `rust-version`.
#   find_cargo            puts cargo's directory on PATH (PATH first, then ~/.cargo/bin) or exits
#   check_rust_version    exits with how to get a newer Rust when rustc is too old

RUSTUP_HINT="get it with: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (then open a new shell, or: . \"\$HOME/.cargo/env\")"

find_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "${0##*/}: cargo not found on PATH nor in ~/.cargo/bin; $RUSTUP_HINT" >&2
      exit 1
    fi
  fi
}

# The `rust-version = "X.Y"` line of Cargo.toml in the current directory.
required_rust_version() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1
}

# `version_at_least HAVE NEED`: true when dotted version HAVE >= NEED.
version_at_least() {
  local i
  local -a have need
  IFS=. read -r -a have <<<"$1"
  IFS=. read -r -a need <<<"$2"
  for ((i = 0; i < ${#need[@]}; i++)); do
    ((${have[i]:-0} > need[i])) && return 0
    ((${have[i]:-0} < need[i])) && return 1
  done
  return 0
}

check_rust_version() {
  local need have
  need=$(required_rust_version)
  [ -n "$need" ] || return 0
  have=$(rustc --version 2>/dev/null | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p')
  if [ -z "$have" ]; then
    echo "${0##*/}: rustc not found next to cargo; ec2lab needs Rust $need or newer; $RUSTUP_HINT" >&2
    exit 1
  fi
  if ! version_at_least "$have" "$need"; then
    echo "${0##*/}: ec2lab needs Rust $need or newer, this is rustc $have; update with: rustup update stable   (or $RUSTUP_HINT)" >&2
    exit 1
  fi
}
