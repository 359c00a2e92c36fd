#!/usr/bin/env bash
# Boot benchmark, one run: RunInstances → first HTTP 200 from Apache on the LAMP image (p50/p95
# over N boots) beside `systemd-nspawn --boot` (Debian's systemd-container) booting a copy of the
# same root filesystem to the same first 200, and the ratio (target: <= 0.25x nspawn's time).
#   sudo scripts/bench/boot.sh [N=10]
# The image is scripts/lib/lamp-image.sh's (built once, cached), or EC2LAB_LAMP_AMI. EC2LAB_BIN
# runs that binary instead of building this tree. Each nspawn boot runs in a network namespace
# of its own that the benchmark makes (loopback only), polled on 127.0.0.1 inside it; if nspawn
# cannot boot here, the output says why.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10}
[ "$(id -u)" -eq 0 ] || { echo "boot.sh: needs root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container >/dev/null
ami=${EC2LAB_LAMP_AMI:-$(scripts/lib/lamp-image.sh)}
BIN=${EC2LAB_BIN:-target/release/ec2lab}
[ -n "${EC2LAB_BIN:-}" ] || cargo build --release -q
tmp=$(mktemp -d)
netns=ec2lab-boot-bench-$$
cleanup() {
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  for ns in $(ip netns list | awk -v p="$netns-" 'index($1, p) == 1 { print $1 }'); do ip netns del "$ns"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# nspawn's copy of the root filesystem (it boots it read-only under a tmpfs, as ours is an overlay).
cp -a "$ami/rootfs" "$tmp/nspawn-root"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$port" --public-cidr 127.97.0.0/16 2>"$tmp/lab.log" &
for _ in $(seq 200); do [ -f "$tmp/lab/daemon.json" ] && break; sleep 0.05; done
sleep 0.5
echo "== $(nproc) cores, $(uname -r); N=$N boots of $(basename "$ami"); $(systemd-nspawn --version | head -1)"
python3 scripts/bench/boot_bench.py "$tmp/lab" "http://127.0.0.1:$port" "$ami" "$tmp/nspawn-root" "$netns" "$N"
