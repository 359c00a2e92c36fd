#!/usr/bin/env bash
# Front benchmark: wrk -t2 -c64 against a static page served by nginx inside an instance —
# through its public IP (front listener: per-connection security-group check, then a
# connection made by the instance's connector), directly inside the instance's namespace, and
# through nginx's TCP `stream` proxy in front of the same server. Two figures: keep-alive
# requests/s, and new connections/s (`Connection: close`, one request per connection).
# REPS repetitions; in each, every figure is measured once (interleaved, so a busy moment of
# the machine hits all of them). Prints each figure's median and spread (min–max) and the
# per-repetition ratios front / nginx stream, and the CPU time (user + system, all threads)
# each proxy spends per request: the ec2lab daemon for the front; for nginx's stream proxy, its
# worker's with the stream figure less its worker's with the direct figure (one worker serves
# both the proxy and the page).
# BEFORE: another ec2lab binary (e.g. main's, kept as target/release/ec2lab.before) run as a
# second lab at the same time; its front is measured in the same repetitions (before/after in
# one run), alternating which goes first.
#   sudo scripts/bench/front.sh [SECONDS=10] [REPS=5] [BEFORE]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}; REPS=${2:-5}; BEFORE=${3:-}
[ "$(id -u)" -eq 0 ] || { echo "front.sh: needs root" >&2; exit 1; }
need=(); for t in wrk:wrk nginx:nginx; do command -v "${t%%:*}" >/dev/null || need+=("${t##*:}"); done
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
((${#need[@]})) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
cargo build --release -q
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "front.sh: $BEFORE is not an executable" >&2; exit 1; }
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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

# lab NAME BINARY CIDR: a daemon with one m5.large instance serving the page; sets
# BIN_<NAME>, ID_<NAME>, IP_<NAME>, PID_<NAME> (the daemon), NGINX_<NAME> (the nginx worker in
# the instance).
lab() {
  local name=$1 bin=$2 cidr=$3 dir=$tmp/$1
  "$bin" serve --data-dir "$dir" --api-addr "127.0.0.1:$(free_port)" --public-cidr "$cidr" \
    --ssh-port "$(free_port)" 2>"$tmp/$name.log" &
  printf -v "PID_$name" %s $!
  for _ in $(seq 200); do [ -f "$dir/daemon.json" ] && break; sleep 0.05; done; sleep 0.3
  local id ip
  id=$(
    eval "$("$bin" env --data-dir "$dir")"; export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
    aws ec2 create-security-group --group-name bench --description bench >/dev/null
    aws ec2 authorize-security-group-ingress --group-name bench --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null
    ami=$(aws ec2 describe-images --filters Name=name,Values=lab-linux --query 'Images[0].ImageId' --output text)
    aws ec2 run-instances --image-id "$ami" --instance-type m5.large --security-groups bench \
      --user-data "file://$tmp/ud.sh" --query 'Instances[0].InstanceId' --output text)
  ip=$(
    eval "$("$bin" env --data-dir "$dir")"; export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
    aws ec2 describe-instances --instance-ids "$id" --query 'Reservations[0].Instances[0].PublicIpAddress' --output text)
  for _ in $(seq 100); do curl -sf "http://$ip/" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$ip/" >/dev/null || { echo "front.sh: lab $name serves nothing on $ip" >&2; exit 1; }
  printf -v "BIN_$name" %s "$bin"; printf -v "ID_$name" %s "$id"; printf -v "IP_$name" %s "$ip"
  local init net w
  init=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["init_pid"])' "$dir/run/$id/init.json")
  net=$(readlink "/proc/$init/ns/net")
  for w in $(pgrep -f 'nginx: worker'); do
    [ "$(readlink "/proc/$w/ns/net")" = "$net" ] && printf -v "NGINX_$name" %s "$w"
  done
}
lab after target/release/ec2lab 127.93.0.0/16
[ -z "$BEFORE" ] || lab before "$BEFORE" 127.94.0.0/16
inside() { "$BIN_after" exec --data-dir "$tmp/after" --user root "$ID_after" -- "$@"; }
close=(-H 'Connection: close')
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# fig NAME WHERE PID [WRK ARGS…]: one measurement appended to $tmp/fig.NAME (requests/s) and
# $tmp/cpu.NAME (CPU µs of process PID per request).
fig() {
  local name=$1 where=$2 pid=$3 t0 out; shift 3
  t0=$(ticks "$pid")
  case $where in
    host) out=$(wrk -t2 -c64 -d"${SECS}s" "$@") ;;
    inside) out=$(inside wrk -t2 -c64 -d"${SECS}s" "$@") ;;
  esac
  awk '/Requests\/sec/ {print $2}' <<<"$out" >> "$tmp/fig.$name"
  awk -v t0="$t0" -v t1="$(ticks "$pid")" -v hz="$(getconf CLK_TCK)" \
    '/requests in/ {printf "%.1f\n", (t1 - t0) / hz / $1 * 1e6}' <<<"$out" >> "$tmp/cpu.$name"
}
fronts() { # the fronts of this repetition, in alternating order
  if [ -z "$BEFORE" ]; then echo after; elif (($1 % 2)); then echo after before; else echo before after; fi
}
echo "== $(nproc) cores; wrk -t2 -c64 -d${SECS}s, $REPS repetitions; nginx $(nginx -v 2>&1 | cut -d/ -f2) serves a static page inside an m5.large instance"
for r in $(seq "$REPS"); do
  for f in $(fronts "$r"); do ip=IP_$f pid=PID_$f; fig "ka_front_$f" host "${!pid}" "http://${!ip}/"; done
  fig ka_stream inside "$NGINX_after" http://127.0.0.1:8081/
  fig ka_direct inside "$NGINX_after" http://127.0.0.1/
  for f in $(fronts "$r"); do ip=IP_$f pid=PID_$f; fig "cc_front_$f" host "${!pid}" "${close[@]}" "http://${!ip}/"; done
  fig cc_stream inside "$NGINX_after" "${close[@]}" http://127.0.0.1:8081/
  fig cc_direct inside "$NGINX_after" "${close[@]}" http://127.0.0.1/
  echo "repetition $r of $REPS done" >&2
done
python3 - "$tmp" <<'PY'
import os, statistics, sys
tmp = sys.argv[1]
def load(name, kind="fig"):
    p = os.path.join(tmp, f"{kind}.{name}")
    return [float(x) for x in open(p).read().split()] if os.path.exists(p) else None
def line(label, xs, unit, fmt="{:.0f}"):
    print(f"{label:<62} {fmt.format(statistics.median(xs)):>10} {unit:<7} "
          f"{fmt.format(min(xs))}–{fmt.format(max(xs))}  ({len(xs)} runs: {' '.join(fmt.format(x) for x in xs)})")
for kind, unit, title in (("ka", "req/s", "keep-alive"), ("cc", "conn/s", "new connections")):
    stream = load(f"{kind}_stream")
    print(f"-- {title}: median, min–max")
    for who, label in (("front_after", "ec2lab front"), ("front_before", "ec2lab front (before)"),
                       ("stream", "nginx stream proxy in front of it"), ("direct", "directly inside the instance")):
        xs = load(f"{kind}_{who}")
        if xs:
            line(f"{title}: {label}", xs, unit)
    for who, label in (("front_after", "front / nginx stream"), ("front_before", "front (before) / nginx stream")):
        xs = load(f"{kind}_{who}")
        if xs:
            line(f"{title}: {label}", [a / b for a, b in zip(xs, stream)], "x", "{:.2f}")
    after, before = load(f"{kind}_front_after"), load(f"{kind}_front_before")
    if after and before:
        line(f"{title}: front after / before", [a / b for a, b in zip(after, before)], "x", "{:.2f}")
    stream, direct = load(f"{kind}_stream", "cpu"), load(f"{kind}_direct", "cpu")
    for who, label in (("front_after", "ec2lab daemon (front)"), ("front_before", "ec2lab daemon (front, before)")):
        xs = load(f"{kind}_{who}", "cpu")
        if xs:
            line(f"CPU per request, {title}: {label}", xs, "µs", "{:.1f}")
    line(f"CPU per request, {title}: nginx stream proxy", [a - b for a, b in zip(stream, direct)], "µs", "{:.1f}")
PY
[ "${RULE_COST:-1}" = 0 ] || cargo test --release -q --lib -- --ignored rule_check_cost --nocapture 2>/dev/null | grep 'rule check'
