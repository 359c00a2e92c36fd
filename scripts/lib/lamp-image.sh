#!/usr/bin/env bash
# The LAMP image (scripts/build-ami.sh debian), built once per content of its inputs and cached:
#   sudo scripts/lib/lamp-image.sh        prints the AMI directory on stdout (the only line)
# 1. hash: sha256 over the inputs (scripts/build-ami.sh, scripts/ami/debian.packages, this file)
# 2. the image is $EC2LAB_AMI_CACHE/debian-<hash>/ (default /var/cache/ec2lab/amis): if it has
#    its manifest.json, it is reused as it is
# 3. else, under a lock (two runs at once build it once): built into a temporary directory beside
#    it, renamed into place at the end, so an interrupted build is never taken for a good one;
#    older debian-* images and leftovers of interrupted builds are removed
# The build's own output goes to stderr. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "lamp-image.sh: needs root (run with sudo)" >&2; exit 1; }
cache=${EC2LAB_AMI_CACHE:-/var/cache/ec2lab/amis}

# 1.
hash=$(cat "$here/build-ami.sh" "$here/ami/debian.packages" "$here/lib/lamp-image.sh" \
  | sha256sum | cut -c1-16)
dir="$cache/debian-$hash"

# 2.
if [ -f "$dir/manifest.json" ]; then echo "$dir"; exit 0; fi

# 3.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -f "$dir/manifest.json" ]; then
  for old in "$cache"/debian-* "$cache"/.building-*; do
    [ -e "$old" ] && [ "$old" != "$dir" ] && { echo "lamp-image.sh: removing $old" >&2; rm -rf "$old"; }
  done
  tmp="$cache/.building-debian-$hash"
  start=$SECONDS
  echo "lamp-image.sh: building $dir (scripts/build-ami.sh debian)" >&2
  "$here/build-ami.sh" debian "$tmp" >&2
  mv "$tmp" "$dir"
  echo "lamp-image.sh: built in $((SECONDS - start)) s" >&2
fi
echo "$dir"
