#!/usr/bin/env bash
# SSH benchmark: the ec2lab gateway vs OpenSSH sshd side by side in one run — a second sshd on a
# loopback port with its own config and host key, the same Ed25519 user key, the same kex
# (curve25519-sha256) and cipher (chacha20-poly1305, or $CIPHER).
#   sudo scripts/bench/ssh.sh [N] [MiB]     N connects per latency measurement (default 50),
#                                           MiB per transfer (default 1024)
#   REPS=5 (repetitions), CLIENTS=50 (concurrent clients, each from its own 127.0.2.x source)
# First the gateway's login breakdown (median ms per step, from its ec2lab::ssh_timing log),
# then REPS repetitions of every figure; prints per figure the median and the spread (min–max)
# of each side, the ratio of the medians and the spread of the per-repetition ratios
# (latency: lower is better; throughput: higher is better).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50}
MIB=${2:-1024}
REPS=${REPS:-5}
CLIENTS=${CLIENTS:-50}
CIPHER=${CIPHER:-chacha20-poly1305@openssh.com}
KEX=curve25519-sha256
[ "$(id -u)" -eq 0 ] || { echo "ssh.sh: needs root (ec2lab serve, sshd)" >&2; exit 1; }
for t in ssh sftp plink puttygen ssh-keygen aws; do
  command -v "$t" >/dev/null || { echo "ssh.sh: needs $t (scripts/test.sh installs it)" >&2; exit 1; }
done
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$SSHD" ] || { echo "ssh.sh: needs sshd (openssh-server)" >&2; exit 1; }
BIN=${EC2LAB_BIN:-target/release/ec2lab}
[ -n "${EC2LAB_BIN:-}" ] || cargo build --release -q

tmp=$(mktemp -d /dev/shm/ssh-bench.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; [ -f "$tmp/sshd.pid" ] && kill "$(cat "$tmp/sshd.pid")" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); gwport=$(free_port); sshdport=$(free_port)

# --- the lab: daemon, key, one instance with a public IP --------------------------------------
EC2LAB_LOG=info,ec2lab::ssh_timing=debug "$BIN" serve --data-dir "$tmp/lab" --api-addr "127.0.0.1:$api" --public-cidr 127.98.0.0/16 \
  --ssh-port "$gwport" 2>"$tmp/lab.log" &
for _ in $(seq 200); do [ -f "$tmp/lab/daemon.json" ] && break; sleep 0.05; done
eval "$("$BIN" env --data-dir "$tmp/lab")"
export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_PAGER=
aws ec2 create-key-pair --key-name bench --key-type ed25519 --query KeyMaterial --output text >"$tmp/k.pem"
chmod 600 "$tmp/k.pem"
ami=$(aws ec2 describe-images --filters Name=name,Values=lab-linux --query 'Images[0].ImageId' --output text)
# As on EC2, the default security group admits no one from outside until tcp/22 is opened.
aws ec2 authorize-security-group-ingress --group-name default --protocol tcp --port 22 --cidr 127.0.0.0/8 >/dev/null
id=$(aws ec2 run-instances --image-id "$ami" --key-name bench --instance-type t2.large \
  --query 'Instances[0].InstanceId' --output text)
for _ in $(seq 300); do
  ip=$(aws ec2 describe-instances --instance-ids "$id" --query 'Reservations[0].Instances[0].PublicIpAddress' --output text 2>/dev/null || true)
  # The root volume is mounted only inside the instance: look through its init's root.
  pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['init_pid'])" "$tmp/lab/run/$id/init.json" 2>/dev/null || true)
  [ -n "$ip" ] && [ "$ip" != None ] && [ -n "$pid" ] && [ -s "/proc/$pid/root/home/ec2-user/.ssh/authorized_keys" ] && break
  sleep 0.1
done
[ -n "$ip" ] && [ "$ip" != None ] || { echo "ssh.sh: instance got no public IP" >&2; exit 1; }

# --- the reference: OpenSSH sshd with its own config, same user key -------------------------
ssh-keygen -q -t ed25519 -N '' -f "$tmp/sshd_host_ed25519_key"
ssh-keygen -y -f "$tmp/k.pem" >"$tmp/authorized_keys"
mkdir -p /run/sshd
cat >"$tmp/sshd_config" <<EOF
Port $sshdport
ListenAddress 127.0.0.1
HostKey $tmp/sshd_host_ed25519_key
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
UseDNS no
MaxStartups 1000
PerSourceMaxStartups none
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
"$SSHD" -f "$tmp/sshd_config" -E "$tmp/sshd.log"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$sshdport") 2>/dev/null && break; sleep 0.05; done

common=(-F /dev/null -i "$tmp/k.pem" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o KexAlgorithms=$KEX -c "$CIPHER")
gw=(-p "$gwport" "ec2-user@$ip"); ref=(-p "$sshdport" root@127.0.0.1)
gw_sftp=(-P "$gwport" "ec2-user@$ip"); ref_sftp=(-P "$sshdport" root@127.0.0.1)

now() { date +%s%N; }
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]/1e6}'; }
p99() { sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99+0.999); if (i<1) i=1; print a[i]/1e6}'; }
latency() { # p50 ms of N runs of "$@"
  for _ in $(seq "$N"); do s=$(now); "$@" >/dev/null 2>&1 </dev/null; echo $(( $(now) - s )); done | p50
}
concurrent() { # p99 ms of CLIENTS ssh clients logging in at once to "$@" (-p port user@host),
  # 4 logins each, each client from its own source address 127.0.2.x
  local out=$tmp/conc i
  : >"$out"
  for i in $(seq "$CLIENTS"); do
    ( for _ in 1 2 3 4; do s=$(now); ssh "${common[@]}" -b "127.0.2.$i" "$@" true >/dev/null 2>&1 </dev/null; echo $(( $(now) - s )); done >>"$out" ) &
  done
  wait
  p99 <"$out"
}
rate() { # MiB/s of one run of "$@"
  local s e; s=$(now); "$@" >/dev/null 2>&1; e=$(now)
  python3 -c "print('%.1f' % ($MIB / (($e - $s) / 1e9)))"
}
results=$tmp/results
record() { echo "$1|$2|$3|$4" >>"$results"; } # figure|unit|gateway|sshd

head -c $((MIB * 1024 * 1024)) /dev/urandom >"$tmp/blob"
echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ssh -c $CIPHER, kex $KEX; N=$N; ${MIB} MiB per transfer; $REPS repetitions; $CLIENTS concurrent clients"
echo "== gateway: ec2lab $id at $ip:$gwport; reference: $("$SSHD" -V 2>&1 | head -1 || true) sshd at 127.0.0.1:$sshdport"

# --- where a gateway login spends its time (its own log, N logins of `true`) ------------------
mark=$(wc -l <"$tmp/lab.log")
for _ in $(seq "$N"); do ssh "${common[@]}" "${gw[@]}" true </dev/null >/dev/null 2>&1; done
echo "== gateway login, median ms per step (from accept) over $N logins:"
tail -n +"$((mark + 1))" "$tmp/lab.log" | python3 scripts/bench/ssh_steps.py || echo "  (none: this binary has no ec2lab::ssh_timing events)"

puttygen "$tmp/k.pem" -O private -o "$tmp/k.ppk"
gfp=$(ssh-keygen -lf "$tmp/lab/volumes/$id/host_keys/ssh_host_ed25519_key.pub" | awk '{print $2}')
rfp=$(ssh-keygen -lf "$tmp/sshd_host_ed25519_key.pub" | awk '{print $2}')
# Transfers: both sides write to tmpfs (/tmp in the instance, /dev/shm for sshd).
sftp_put() { echo "put $tmp/blob $2" | sftp "${common[@]}" -b - "${@:3}" >/dev/null; }
sftp_get() { echo "get $2 /dev/null" | sftp "${common[@]}" -b - "${@:3}" >/dev/null; }
cat_up() { ssh "${common[@]}" "$@" 'cat >/dev/null' <"$tmp/blob"; }
cat_down() { ssh "${common[@]}" "$@" "head -c $((MIB * 1024 * 1024)) /dev/zero" >/dev/null; }

for rep in $(seq "$REPS"); do
  echo "== repetition $rep/$REPS (load $(cut -d' ' -f1 /proc/loadavg))"
  record "ssh connect+auth+exec true p50" ms \
    "$(latency ssh "${common[@]}" "${gw[@]}" true)" "$(latency ssh "${common[@]}" "${ref[@]}" true)"
  record "plink connect+auth+exec true p50" ms \
    "$(latency plink -batch -noagent -ssh -i "$tmp/k.ppk" -hostkey "$gfp" -P "$gwport" "ec2-user@$ip" true)" \
    "$(latency plink -batch -noagent -ssh -i "$tmp/k.ppk" -hostkey "$rfp" -P "$sshdport" root@127.0.0.1 true)"
  record "ssh true, $CLIENTS concurrent, p99" ms \
    "$(concurrent "${gw[@]}")" "$(concurrent "${ref[@]}")"
  record "sftp upload" MiB/s "$(rate sftp_put x /tmp/blob "${gw_sftp[@]}")" "$(rate sftp_put x "$tmp/blob.up" "${ref_sftp[@]}")"
  record "sftp download" MiB/s "$(rate sftp_get x /tmp/blob "${gw_sftp[@]}")" "$(rate sftp_get x "$tmp/blob.up" "${ref_sftp[@]}")"
  record "exec cat upload" MiB/s "$(rate cat_up "${gw[@]}")" "$(rate cat_up "${ref[@]}")"
  record "exec cat download" MiB/s "$(rate cat_down "${gw[@]}")" "$(rate cat_down "${ref[@]}")"
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    fig, unit, g, r = line.rstrip("\n").split("|")
    rows.setdefault((fig, unit), []).append((float(g), float(r)))
print(f"{'measurement':<36} {'gateway median (min–max)':>28} {'sshd median (min–max)':>28} {'ratio':>6} {'ratio min–max':>14}")
for (fig, unit), vals in rows.items():
    g = [v[0] for v in vals]; r = [v[1] for v in vals]
    ratios = [a / b for a, b in vals if b]
    cell = lambda xs: f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f}) {unit}"
    print(f"{fig:<36} {cell(g):>28} {cell(r):>28} {statistics.median(g) / statistics.median(r):6.2f} {min(ratios):6.2f}–{max(ratios):.2f}")
PY
