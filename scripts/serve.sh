#!/usr/bin/env bash
# README command 1: builds ec2lab as you (cargo build --release) and runs the daemon as root.
#   scripts/serve.sh [SERVE FLAGS…]     e.g. scripts/serve.sh --ssh-port 2222
# Run it as your normal user: it uses sudo for the daemon (namespaces, cgroups, port 22) and apt.
# Finds cargo on PATH or in ~/.cargo/bin and checks Cargo.toml's rust-version first.
# Installs Debian's lxcfs (instances' /proc as their type sees it) and nftables (security
# groups between instances, in the VPC router) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh

find_cargo
check_rust_version
cargo build --release
SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
need=()
[ -x /usr/bin/lxcfs ] || need+=(lxcfs)
[ -x /usr/sbin/nft ] || need+=(nftables)
if ((${#need[@]})) && command -v apt-get >/dev/null; then
  echo "serve.sh: installing ${need[*]} (lxcfs: free, nproc and uptime inside instances as their type; nftables: security groups between instances)" >&2
  { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } ||
    echo "serve.sh: could not install ${need[*]}: without lxcfs instances see the host's /proc figures; without nftables instances cannot reach each other" >&2
fi
exec "${SUDO[@]}" target/release/ec2lab serve "$@"
