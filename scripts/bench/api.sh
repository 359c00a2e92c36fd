#!/usr/bin/env bash
# API benchmark: DescribeKeyPairs and CreateKeyPair (ed25519) against ec2lab and against moto in
# server mode, side by side in one run, with the same signed raw HTTP requests.
#   sudo scripts/bench/api.sh [N]        N requests per measurement (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
[ "$(id -u)" -eq 0 ] || { echo "api.sh: needs root (ec2lab serve)" >&2; exit 1; }
python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install -q 'moto[server]'
cargo build --release -q
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/ec2lab serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$port" --public-cidr 127.99.0.0/16 2>"$tmp/lab.log" &
python3 -m moto.server -H 127.0.0.1 -p "$mport" >"$tmp/moto.log" 2>&1 &
for _ in $(seq 100); do
  [ -f "$tmp/lab/daemon.json" ] && curl -s "http://127.0.0.1:$mport/" >/dev/null 2>&1 && break; sleep 0.1
done
key=$(python3 -c "import json;print(json.load(open('$tmp/lab/credentials.json'))['access_key_id'])")
secret=$(python3 -c "import json;print(json.load(open('$tmp/lab/credentials.json'))['secret_access_key'])")
echo "== $(nproc) cores; N=$N per measurement; 4 client processes for throughput"
printf '%-18s %-8s %9s %9s %9s\n' action server p50_ms p99_ms req/s
for action in DescribeKeyPairs CreateKeyPair; do
  n=$N
  # CreateKeyPair keeps every key: stay under EC2's 5,000 key pairs per region (1 + 4 workers).
  [ "$action" = CreateKeyPair ] && [ "$n" -gt 900 ] && n=900
  lab=$(python3 scripts/bench/api_bench.py "http://127.0.0.1:$port" "$key" "$secret" "$action" "$n")
  moto=$(python3 scripts/bench/api_bench.py "http://127.0.0.1:$mport" testing testing "$action" "$n")
  for pair in "ec2lab:$lab" "moto:$moto"; do
    python3 -c "import json,sys; d=json.loads(sys.argv[2]); print('%-18s %-8s %9.3f %9.3f %9d' % (d['action'], sys.argv[1], d['p50_ms'], d['p99_ms'], d['rps']))" "${pair%%:*}" "${pair#*:}"
  done
  python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print('%-18s ratio    p50 %.1fx faster, throughput %.1fx' % (a['action'], b['p50_ms']/a['p50_ms'], a['rps']/b['rps']))" "$lab" "$moto"
done
