#!/usr/bin/env bash
# Front benchmark, one run: wrk -t2 -c64 -d10s against a static page served by nginx inside an
# instance — through its public IP (front listener with the per-connection security-group
# check), directly inside the instance's namespace, and through nginx's TCP `stream` proxy in
# front of the same server — plus new-connection rates (Connection: close) and the cost of the
# rule check alone.
#   sudo scripts/bench/front.sh [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
[ "$(id -u)" -eq 0 ] || { echo "front.sh: needs root" >&2; exit 1; }
need=(); for t in wrk:wrk nginx:nginx; do command -v "${t%%:*}" >/dev/null || need+=("${t##*:}"); done
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
((${#need[@]})) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
cargo build --release -q
E=target/release/ec2lab
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sshp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$E serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$port" --public-cidr 127.97.0.0/16 --ssh-port "$sshp" 2>"$tmp/lab.log" &
for _ in $(seq 200); do [ -f "$tmp/lab/daemon.json" ] && break; sleep 0.05; done; sleep 0.3
eval "$($E env --data-dir "$tmp/lab")"; export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
aws ec2 create-security-group --group-name bench --description bench >/dev/null
aws ec2 authorize-security-group-ingress --group-name bench --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null
cat > "$tmp/ud.sh" <<'UD'
#!/bin/sh
mkdir -p /tmp/nginx
cat > /tmp/nginx/nginx.conf <<'CONF'
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon on; worker_processes 1; pid /tmp/nginx/nginx.pid; error_log /tmp/nginx/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path /tmp/nginx; proxy_temp_path /tmp/nginx;
       fastcgi_temp_path /tmp/nginx; uwsgi_temp_path /tmp/nginx; scgi_temp_path /tmp/nginx;
       server { listen 80; location / { return 200 "hello from ec2lab\n"; } } }
stream { server { listen 8081; proxy_pass 127.0.0.1:80; } }
CONF
nginx -c /tmp/nginx/nginx.conf
UD
AMI=$(aws ec2 describe-images --filters Name=name,Values=lab-linux --query 'Images[0].ImageId' --output text)
ID=$(aws ec2 run-instances --image-id "$AMI" --instance-type m5.large --security-groups bench \
      --user-data "file://$tmp/ud.sh" --query 'Instances[0].InstanceId' --output text)
IP=$(aws ec2 describe-instances --instance-ids "$ID" --query 'Reservations[0].Instances[0].PublicIpAddress' --output text)
for _ in $(seq 100); do curl -sf "http://$IP/" >/dev/null && break; sleep 0.1; done
rps() { awk '/Requests\/sec/ {print $2}'; }
inside() { $E exec --data-dir "$tmp/lab" --user root "$ID" -- "$@"; }
echo "== $(nproc) cores; wrk -t2 -c64 -d${SECS}s; nginx $(nginx -v 2>&1 | cut -d/ -f2) serves a static page inside an m5.large instance"
front=$(wrk -t2 -c64 -d"${SECS}s" "http://$IP/" | rps)
direct=$(inside wrk -t2 -c64 -d"${SECS}s" http://127.0.0.1/ | rps)
stream=$(inside wrk -t2 -c64 -d"${SECS}s" http://127.0.0.1:8081/ | rps)
printf '%-44s %10s req/s\n' "through the public IP (ec2lab front)" "$front" "directly inside the instance" "$direct" "nginx stream proxy in front of it" "$stream"
python3 -c "import sys; f,d,s=map(float,sys.argv[1:]); print(f'ratio: front / nginx stream = {f/s:.2f}x; front / direct = {f/d:.2f}x')" "$front" "$direct" "$stream"
# New connections per second (each request on its own connection).
cfront=$(wrk -t2 -c64 -d"${SECS}s" -H 'Connection: close' "http://$IP/" | rps)
cstream=$(inside wrk -t2 -c64 -d"${SECS}s" -H 'Connection: close' http://127.0.0.1:8081/ | rps)
cdirect=$(inside wrk -t2 -c64 -d"${SECS}s" -H 'Connection: close' http://127.0.0.1/ | rps)
printf '%-44s %10s conn/s\n' "new connections: front" "$cfront" "new connections: nginx stream" "$cstream" "new connections: direct" "$cdirect"
cargo test --release -q --lib -- --ignored rule_check_cost --nocapture 2>/dev/null | grep 'rule check'
