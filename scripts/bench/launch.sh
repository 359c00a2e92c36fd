#!/usr/bin/env bash
# Launch benchmark, one run: RunInstances → first successful `ec2lab exec i-… true` (p50/p95
# over N launches) beside bwrap and crun (or runc, where crun refuses the host) starting the same root filesystem (lab-linux's), then
# density: D idle t2.nano instances, their time and memory.
#   sudo scripts/bench/launch.sh [N=100] [D=500]
# EC2LAB_BIN=path runs that binary instead of building this tree (e.g. an older build, to
# measure a change before and after in one sitting); EC2LAB_SERVE_ARGS adds serve flags.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100}; D=${2:-500}
[ "$(id -u)" -eq 0 ] || { echo "launch.sh: needs root" >&2; exit 1; }
for t in bwrap:bubblewrap crun:crun runc:runc; do
  command -v "${t%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${t##*:}" >/dev/null
done
BIN=${EC2LAB_BIN:-target/release/ec2lab}
[ -n "${EC2LAB_BIN:-}" ] || cargo build --release -q
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The density run needs more than the account's default 64 vCPUs (older builds have no limit).
limits=(); "$BIN" serve --help | grep -q -- --max-vcpus && limits=(--max-vcpus 100000)
read -r -a extra <<<"${EC2LAB_SERVE_ARGS:-}"
"$BIN" serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$port" --public-cidr 127.98.0.0/16 "${limits[@]}" "${extra[@]}" 2>"$tmp/lab.log" &
for _ in $(seq 200); do [ -f "$tmp/lab/daemon.json" ] && break; sleep 0.05; done
sleep 0.5
binds=$(python3 -c "import json;print(','.join(json.load(open('$tmp/lab/amis/lab-linux/manifest.json'))['host_binds']))")
echo "== $(nproc) cores, $(uname -r); N=$N launches, density D=$D"
python3 scripts/bench/launch_bench.py "$BIN" "$tmp/lab" "http://127.0.0.1:$port" \
  "$tmp/lab/amis/lab-linux/rootfs" "$binds" "$N" "$D"
