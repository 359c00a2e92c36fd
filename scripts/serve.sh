#!/usr/bin/env bash
# README command 1: builds ec2lab as you (cargo build --release) and runs the daemon as root.
#   scripts/serve.sh [SERVE FLAGS…]     e.g. scripts/serve.sh --ssh-port 2222
# Run it as your normal user: it uses sudo for the daemon only (namespaces, cgroups, port 22).
# Finds cargo on PATH or in ~/.cargo/bin and checks Cargo.toml's rust-version first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh

find_cargo
check_rust_version
cargo build --release
if [ "$(id -u)" -eq 0 ]; then
  exec target/release/ec2lab serve "$@"
fi
exec sudo target/release/ec2lab serve "$@"
