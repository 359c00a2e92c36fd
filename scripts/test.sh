#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs every test.
#   scripts/test.sh            install (if missing) + build + test
# Needs root for the daemon's tests (namespaces, cgroups); under CI=true a test whose
# prerequisite is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in puttygen:putty-tools ssh:openssh-client ssh-keygen:openssh-client sshd:openssh-server \
            curl:curl sudo:sudo ps:procps ssh-keyscan:openssh-client setpriv:util-linux openssl:openssl busybox:busybox-static ip:iproute2 \
            mkfs.ext4:e2fsprogs; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || need_apt+=("${tool##*:}")
done
# The escape suite runs the distribution's python3 inside instances (they see the host's /usr).
[ -x /usr/bin/python3 ] || need_apt+=(python3)
if ((${#need_apt[@]})); then
  echo "test.sh: installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v aws >/dev/null 2>&1; then
  echo "test.sh: installing the aws CLI (PyPI awscli)" >&2
  python3 -m pip install -q 'awscli>=1.44,<2'
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
  hash -r
fi
command -v aws >/dev/null || export PATH="$HOME/.local/bin:$PATH"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
