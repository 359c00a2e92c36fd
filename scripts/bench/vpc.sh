#!/usr/bin/env bash
# VPC benchmark, one run: iperf3 TCP throughput (one stream, SECS seconds) and TCP
# request/response latency (1-byte ping-pong, N round trips, TCP_NODELAY) between two
# instances through the lab's VPC router, both in a group with 50 rules (nftables, stateful),
# side by side with the same traffic between two plain network namespaces joined by veths
# through a bare forwarding namespace (no rules) that this script makes. Then rule changes: R
# authorize/revoke calls, and how long each took from the API's request to the ruleset being in
# the kernel (the daemon's `vpc firewall applied since_asked_ms`). Ratios: ours / bare.
#   sudo scripts/bench/vpc.sh [SECS=5] [N=5000] [R=20]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}; N=${2:-5000}; R=${3:-20}
[ "$(id -u)" -eq 0 ] || { echo "vpc.sh: needs root" >&2; exit 1; }
[ -x .venv/bin/aws ] && PATH="$PWD/.venv/bin:$PATH"  # scripts/test.sh's aws CLI
need=(); for t in iperf3:iperf3 nft:nftables aws:awscli; do command -v "${t%%:*}" >/dev/null || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t##*:}"); done
((${#need[@]})) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
cargo build --release -q
BIN=target/release/ec2lab
tmp=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  for ns in vbA vbR vbB; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The two measurements, run inside a namespace or an instance: $1 = server address.
cat > "$tmp/rr.py" <<'PY'
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = int(sys.argv[2])
for _ in range(200): s.sendall(b"x"); s.recv(1)
t = time.perf_counter()
for _ in range(n): s.sendall(b"x"); s.recv(1)
print(f"{(time.perf_counter() - t) / n * 1e6:.1f}")
PY
cat > "$tmp/echo.py" <<'PY'
import socket, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("", 7000)); l.listen(8)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(64)):
        c.sendall(b)
while True:
    c, _ = l.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
gbps() { python3 -c 'import json,sys; v = json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]; print(f"{v / 1e9:.2f}")'; }

# 1. Bare path: vbA -- vbR (forwarding, no rules) -- vbB.
for ns in vbA vbR vbB; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add a0 netns vbA type veth peer name ra netns vbR
ip link add b0 netns vbB type veth peer name rb netns vbR
ip -n vbA addr add 10.99.0.2/24 dev a0; ip -n vbA link set a0 up; ip -n vbA route add default via 10.99.0.1
ip -n vbB addr add 10.99.1.2/24 dev b0; ip -n vbB link set b0 up; ip -n vbB route add default via 10.99.1.1
ip -n vbR addr add 10.99.0.1/24 dev ra; ip -n vbR addr add 10.99.1.1/24 dev rb
ip -n vbR link set ra up; ip -n vbR link set rb up
ip netns exec vbR sysctl -qw net.ipv4.ip_forward=1
ip netns exec vbB iperf3 -s -D -1 >/dev/null; ip netns exec vbB python3 "$tmp/echo.py" & sleep 0.5
bare_tp=$(ip netns exec vbA iperf3 -c 10.99.1.2 -t "$SECS" -J | gbps)
bare_rr=$(ip netns exec vbA python3 "$tmp/rr.py" 10.99.1.2 "$N")

# 2. The lab: two instances in one group of 50 rules.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EC2LAB_LOG=info,ec2lab::vpc=debug "$BIN" serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$port" \
  --public-cidr 127.96.0.0/16 2>"$tmp/lab.log" &
for _ in $(seq 200); do [ -f "$tmp/lab/daemon.json" ] && break; sleep 0.05; done
eval "$("$BIN" env --data-dir "$tmp/lab")"
export AWS_PAGER=""
sg=$(aws ec2 create-security-group --group-name bench50 --description bench --query GroupId --output text)
perms=$(python3 -c '
import json
p = [{"IpProtocol": "tcp", "FromPort": 10000 + i, "ToPort": 10000 + i, "IpRanges": [{"CidrIp": "10.%d.0.0/16" % i}]} for i in range(47)]
p += [{"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "172.31.0.0/16"}]},
      {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "172.31.0.0/16"}]},
      {"IpProtocol": "tcp", "FromPort": 5201, "ToPort": 5201, "IpRanges": [{"CidrIp": "172.31.0.0/16"}]},
      {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000, "IpRanges": [{"CidrIp": "172.31.0.0/16"}]}]
print(json.dumps(p))')
aws ec2 authorize-security-group-ingress --group-id "$sg" --ip-permissions "$perms" >/dev/null
ami=$(aws ec2 describe-images --query 'Images[?Name==`lab-linux`].ImageId' --output text)
ids=$(aws ec2 run-instances --image-id "$ami" --instance-type m5.large --count 2 --security-group-ids "$sg" \
  --query 'Instances[].InstanceId' --output text)
read -r a b <<<"$ids"
bip=$(aws ec2 describe-instances --instance-ids "$b" --query 'Reservations[0].Instances[0].PrivateIpAddress' --output text)
in_a() { "$BIN" exec --data-dir "$tmp/lab" "$a" -- sh -c "$1"; }
in_b() { "$BIN" exec --data-dir "$tmp/lab" "$b" -- sh -c "$1"; }
in_b "cat > /tmp/echo.py" < "$tmp/echo.py"; in_a "cat > /tmp/rr.py" < "$tmp/rr.py"
in_b "iperf3 -s -D -1 >/dev/null; setsid -f python3 /tmp/echo.py >/dev/null 2>&1"
sleep 0.5
lab_tp=$(in_a "iperf3 -c $bip -t $SECS -J" | gbps)
lab_rr=$(in_a "python3 /tmp/rr.py $bip $N")

# 3. Rule changes: authorize and revoke one rule R times; the daemon's time from each call to
#    the ruleset in the kernel.
before=$(grep -c 'vpc firewall applied' "$tmp/lab.log" || true)
for i in $(seq "$R"); do
  if ((i % 2)); then verb=authorize; else verb=revoke; fi
  aws ec2 "$verb-security-group-ingress" --group-id "$sg" --protocol tcp --port 9000 --cidr 172.31.0.0/16 >/dev/null
done
sleep 1
changes=$(grep 'vpc firewall applied' "$tmp/lab.log" | tail -n +"$((before + 1))" |
  sed -n 's/.*since_asked_ms=\([0-9.]*\).*/\1/p' | sort -n)
p50=$(echo "$changes" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(echo "$changes" | tail -1)

echo "== $(nproc) cores, $(uname -r); iperf3 ${SECS}s one stream, $N round trips, $R rule changes"
printf '%-44s %8s Gbit/s  %8s µs/round trip\n' "bare veth through a forwarding namespace" "$bare_tp" "$bare_rr"
printf '%-44s %8s Gbit/s  %8s µs/round trip\n' "ec2lab VPC router, 50 rules, conntrack" "$lab_tp" "$lab_rr"
python3 -c "print(f'ratio: throughput {$lab_tp/$bare_tp:.2f}x bare, latency {$lab_rr/$bare_rr:.2f}x bare')"
echo "rule change to enforced: p50 ${p50} ms, max ${max} ms over $(echo "$changes" | grep -c .) applies"
