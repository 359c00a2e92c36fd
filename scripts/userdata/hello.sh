#!/bin/sh
# A first user data script: runs once, as root, at the instance's first boot, with the image's
# /bin/sh (bash, dash or busybox ash). Its output lands in /var/log/cloud-init-output.log and in
# the console output. Reads the instance metadata service with curl, or busybox wget.
IMDS=http://169.254.169.254/latest/meta-data
md() {
  if command -v curl >/dev/null 2>&1; then curl -s "$IMDS/$1"; else wget -qO- "$IMDS/$1"; fi
}
echo "Hello from $(hostname), instance $(md instance-id)"
echo "Zone: $(md placement/availability-zone)"
mkdir -p /var/tmp
date > /var/tmp/first-boot
