#!/usr/bin/env bash
# Builds AMI directories for ec2lab (register them with `ec2lab image register DIR`).
#
#   scripts/build-ami.sh busybox DIR    a tiny image: busybox-static only (a few MB, seconds)
#   scripts/build-ami.sh debian  DIR    Debian 12 from Debian's packages with debootstrap, with
#                                       the packages in scripts/ami/debian.packages (apache2, php,
#                                       mariadb, systemd, sudo, curl…) and the users admin and
#                                       ec2-user: the LAMP lab's image (2-3 minutes, ~500 MB;
#                                       scripts/lib/lamp-image.sh builds it once into a cache)
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
    pkgs=$(grep -v '^#' "$(dirname "$0")/ami/debian.packages" | paste -sd, -)
    r="$dir/rootfs"
    # No service starts inside the build chroot: invoke-rc.d asks policy-rc.d first (101 = no).
    mkdir -p "$r/usr/sbin"
    printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
    # Downloaded .debs are kept for the next build (a changed package list fetches only the new).
    cache=${DEBOOTSTRAP_CACHE:-/var/cache/ec2lab/debootstrap}; mkdir -p "$cache"
    debootstrap --variant=minbase --cache-dir="$cache" --include="$pkgs" bookworm "$r" "$mirror"
    rm -f "$r/usr/sbin/policy-rc.d"
    # The users cloud-init makes on Debian's and Amazon Linux's AMIs: bash, sudo without a password.
    : > "$r/etc/sudoers.d/90-cloud-init-users"; chmod 440 "$r/etc/sudoers.d/90-cloud-init-users"
    for u in admin:1000 ec2-user:1001; do
      name=${u%%:*}; id=${u##*:}
      add_user "$r" "$name" "$id"
      sed -i "s|^$name:\(.*\):/bin/sh\$|$name:\1:/bin/bash|" "$r/etc/passwd"
      for g in sudo adm; do sed -i "s/^$g:x:\([0-9]*\):\(.*\)$/$g:x:\1:\2,$name/; s/:,$name$/:$name/" "$r/etc/group"; done
      echo "$name ALL=(ALL) NOPASSWD:ALL" >> "$r/etc/sudoers.d/90-cloud-init-users"
      cp -r "$r/etc/skel/." "$r/home/$name/"; chown -R "$id:$id" "$r/home/$name"
    done
    # Amazon Linux has no index.html: the tutorial's index.php is what / serves.
    rm -f "$r/var/www/html/index.html"
    # Enabled at boot: the wants links the packages' postinsts made (made here if one is missing).
    for svc in apache2 mariadb; do
      w="$r/etc/systemd/system/multi-user.target.wants/$svc.service"
      [ -L "$w" ] || { mkdir -p "${w%/*}"; ln -s "/lib/systemd/system/$svc.service" "$w"; }
    done
    # Smaller: no docs, manuals or translations (copyright files stay), as Debian's slim images.
    cat > "$r/etc/dpkg/dpkg.cfg.d/90-ec2lab-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
    find "$r/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/*
    # Apt caches are not shipped.
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/*
    : > "$r/etc/machine-id"
    write_manifest debian-12-lamp "Debian 12 (bookworm) with Apache, PHP and MariaDB for the LAMP lab" admin
    ;;
  *) usage >&2 ;;
esac
echo "built $kind AMI in $dir; register it with: ec2lab image register $dir --name <name>"
