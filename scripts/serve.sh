#!/usr/bin/env bash
# README command 1: builds ec2lab as you (cargo build --release) and runs the daemon as root.
#   scripts/serve.sh [SERVE FLAGS…]     e.g. scripts/serve.sh --ssh-port 2222
# Run it as your normal user: it uses sudo for the daemon (namespaces, cgroups, port 22) and apt.
# Finds cargo on PATH or in ~/.cargo/bin and checks Cargo.toml's rust-version first.
# Installs Debian's lxcfs when it is missing (instances' /proc as their type sees it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh

find_cargo
check_rust_version
cargo build --release
SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
if [ ! -x /usr/bin/lxcfs ] && command -v apt-get >/dev/null; then
  echo "serve.sh: installing lxcfs (free, nproc and uptime inside instances as their type)" >&2
  { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lxcfs >/dev/null; } ||
    echo "serve.sh: no lxcfs: instances see the host's /proc figures" >&2
fi
exec "${SUDO[@]}" target/release/ec2lab serve "$@"
