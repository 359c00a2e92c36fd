#!/usr/bin/env bash
# Builds AMI directories for ec2lab (register them with `ec2lab image register DIR`).
#
#   scripts/build-ami.sh busybox DIR    a tiny image: busybox-static only (a few MB, seconds)
#   scripts/build-ami.sh debian  DIR    Debian 12 from Debian's packages with debootstrap, with
#                                       apache2, php, mariadb, sudo, curl, openssh-sftp-server:
#                                       the LAMP lab's image (a few minutes, ~600 MB)
#
# An AMI directory is DIR/manifest.json + DIR/rootfs/. Needs root (file ownership, debootstrap).
set -euo pipefail

# The comment block above, as help: on stdout for -h/--help, else on stderr with status 2.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
case "${1:-}" in -h|--help) usage 0 ;; esac
[ $# -eq 2 ] || usage >&2
kind=$1; dir=$(realpath -m "$2")
[ "$(id -u)" -eq 0 ] || { echo "build-ami.sh: needs root (run with sudo)" >&2; exit 1; }
[ ! -e "$dir/rootfs" ] || { echo "build-ami.sh: $dir/rootfs already exists; remove it first" >&2; exit 1; }

install_pkg() {  # tool package
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}

write_manifest() {  # name description user
  cat > "$dir/manifest.json" <<JSON
{
  "name": "$1",
  "description": "$2",
  "architecture": "$(uname -m)",
  "default_user": "$3",
  "root_device_name": "/dev/xvda",
  "root_size_gib": 8
}
JSON
}

add_user() {  # rootfs user uid
  local r=$1 u=$2 id=$3
  grep -q "^$u:" "$r/etc/passwd" || echo "$u:x:$id:$id:EC2 Default User:/home/$u:/bin/sh" >> "$r/etc/passwd"
  grep -q "^$u:" "$r/etc/group" || echo "$u:x:$id:" >> "$r/etc/group"
  [ ! -f "$r/etc/shadow" ] || grep -q "^$u:" "$r/etc/shadow" || echo "$u:!:20000:0:99999:7:::" >> "$r/etc/shadow"
  mkdir -p "$r/home/$u"; chown "$id:$id" "$r/home/$u"; chmod 700 "$r/home/$u"
}

case "$kind" in
  busybox)
    install_pkg busybox busybox-static
    bb=$(command -v busybox)
    file -L "$bb" 2>/dev/null | grep -q 'dynamically' && { echo "build-ami.sh: $bb is not static (install busybox-static)" >&2; exit 1; }
    r="$dir/rootfs"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,home,root,tmp,var/log,var/lib,var/tmp,proc,sys,dev,run}
    chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 700 "$r/root"
    cp "$bb" "$r/bin/busybox"
    for applet in $("$bb" --list-full); do
      [ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
    printf 'root:x:0:\nwheel:x:10:ec2-user\nnogroup:x:65534:\n' > "$r/etc/group"
    printf 'root:*:20000:0:99999:7:::\n' > "$r/etc/shadow"; chmod 640 "$r/etc/shadow"
    add_user "$r" ec2-user 1000
    echo busybox > "$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n' > "$r/etc/hosts"
    printf 'NAME="ec2lab busybox"\nID=busybox\nPRETTY_NAME="ec2lab tiny busybox image"\n' > "$r/etc/os-release"
    write_manifest busybox "A tiny busybox image" ec2-user
    ;;
  debian)
    install_pkg debootstrap debootstrap
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    debootstrap --variant=minbase \
      --include=apache2,libapache2-mod-php,php,php-mysql,mariadb-server,sudo,curl,procps,iproute2,openssh-sftp-server,ca-certificates,less,nano \
      bookworm "$dir/rootfs" "$mirror"
    r="$dir/rootfs"
    add_user "$r" admin 1000
    sed -i 's|^admin:\(.*\):/bin/sh$|admin:\1:/bin/bash|' "$r/etc/passwd"
    for g in sudo adm; do sed -i "s/^$g:x:\([0-9]*\):\(.*\)$/$g:x:\1:\2,admin/; s/:,admin$/:admin/" "$r/etc/group"; done
    echo 'admin ALL=(ALL) NOPASSWD:ALL' > "$r/etc/sudoers.d/90-cloud-init-users"; chmod 440 "$r/etc/sudoers.d/90-cloud-init-users"
    cp -r "$r/etc/skel/." "$r/home/admin/"; chown -R 1000:1000 "$r/home/admin"
    # Services must not start inside the chroot during the build; apt caches are not shipped.
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
    : > "$r/etc/machine-id"
    write_manifest debian-12-lamp "Debian 12 (bookworm) with Apache, PHP and MariaDB for the LAMP lab" admin
    ;;
  *) usage >&2 ;;
esac
echo "built $kind AMI in $dir; register it with: ec2lab image register $dir --name <name>"
