#!/usr/bin/env bash
# README command 2: installs what the test suite needs, builds the tests as you, runs them as root.
#   scripts/test.sh [NEXTEST/CARGO TEST ARGS…]     e.g. scripts/test.sh --test images
# Run it as your normal user (it uses sudo for apt-get and to run the test binaries, which need
# root for namespaces and cgroups); it works as root too.
#  1. Debian packages the tests drive, with apt-get, when missing (python3-venv among them).
#  2. The Python clients (aws CLI, boto3) in a project-local venv, .venv/, from
#     requirements-test.txt; re-installed only when that file changes. .venv/bin goes first in PATH.
#  3. The LAMP image for tests/lamp.rs (scripts/lib/lamp-image.sh, as root: built once, cached
#     by the content of its inputs) in the background while step 4 builds; its directory is
#     exported as EC2LAB_LAMP_AMI. Set EC2LAB_LAMP_AMI yourself to skip it (a value that is not an
#     AMI directory makes tests/lamp.rs skip, or fail under CI=true).
#  4. cargo nextest (or cargo test) builds as you, then runs each test binary as root through sudo.
# Under CI=true a test whose prerequisite is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "test.sh: needs sudo (or run it as root)" >&2; exit 1; }
  SUDO=(sudo)
fi

# 1. Debian packages (command:package).
need_apt=()
for tool in puttygen:putty-tools ssh:openssh-client ssh-keygen:openssh-client sshd:openssh-server \
            curl:curl sudo:sudo ps:procps ssh-keyscan:openssh-client setpriv:util-linux openssl:openssl busybox:busybox-static ip:iproute2 \
            mkfs.ext4:e2fsprogs lxcfs:lxcfs nft:nftables ping:iputils-ping; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || need_apt+=("${tool##*:}")
done
# The escape suite runs the distribution's python3 inside instances (they see the host's /usr).
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# `python3 -m venv` needs Debian's python3-venv (ensurepip) for the distribution's python3.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if ((${#need_apt[@]})); then
  echo "test.sh: installing ${need_apt[*]}" >&2
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. The Python clients, in .venv/ (never in the system Python).
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
stamp=.venv/requirements.sha256
if [ ! -x .venv/bin/python3 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test.sh: installing requirements-test.txt into .venv/ (with $python)" >&2
  [ -x .venv/bin/python3 ] || "$python" -m venv .venv
  .venv/bin/python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
  echo "$want" > "$stamp"
fi
PATH="$PWD/.venv/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv"

# sudo's password once, now, not in the background job or in the middle of the run.
((${#SUDO[@]} == 0)) || sudo -v

# 3. The LAMP image, in the background.
lamp_pid=
if [ -z "${EC2LAB_LAMP_AMI+set}" ]; then
  lamp_out=$(mktemp); lamp_log=$(mktemp)
  trap 'rm -f "$lamp_out" "$lamp_log"' EXIT
  "${SUDO[@]}" scripts/lib/lamp-image.sh >"$lamp_out" 2>"$lamp_log" &
  lamp_pid=$!
fi

# 4. Build as you, run the test binaries as root.
find_cargo
check_rust_version
if ((${#SUDO[@]})); then
  triple=$(rustc -vV | sed -n 's/^host: //p')
  var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
  # sudo resets PATH (secure_path) and HOME: give the tests this PATH (.venv first) and root's HOME.
  export "$var=sudo -n -E env PATH=$PATH HOME=/root"
fi
export PATH
runner=(cargo test)
cargo nextest --version >/dev/null 2>&1 && runner=(cargo nextest run)
"${runner[@]}" --no-run "$@"
if [ -n "$lamp_pid" ]; then
  if wait "$lamp_pid"; then
    EC2LAB_LAMP_AMI=$(tail -n 1 "$lamp_out")
    echo "test.sh: the LAMP image is $EC2LAB_LAMP_AMI" >&2
  else
    echo "test.sh: the LAMP image was not built (tests/lamp.rs skips, or fails under CI=true):" >&2
    tail -n 20 "$lamp_log" >&2
    EC2LAB_LAMP_AMI=
  fi
  export EC2LAB_LAMP_AMI
fi
"${runner[@]}" --no-fail-fast "$@"
