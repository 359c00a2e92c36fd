#!/bin/sh
# The classic EC2 LAMP bootstrap, for ec2lab: runs once at first boot, as root, with the image's
# /bin/sh (bash, dash or busybox ash), on every AMI scripts/build-ami.sh builds.
# Starts a web server on port 80 whose page shows this instance's id, private IP and zone,
# read from the instance metadata service: IMDSv2 with curl; with busybox wget (no PUT, so no
# token) IMDSv1, which works unless the instance requires tokens (HttpTokens=required).
# Apache + PHP (+ MariaDB) where the AMI has them (the Debian AMI from scripts/build-ami.sh);
# otherwise the best server the AMI offers (python3 http.server, busybox httpd).
set -u
IMDS=http://169.254.169.254/latest
if command -v curl >/dev/null 2>&1; then
  TOKEN=$(curl -s -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" "$IMDS/api/token")
  md() { curl -s -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/meta-data/$1"; }
elif command -v wget >/dev/null 2>&1; then
  md() { wget -qO- "$IMDS/meta-data/$1"; }
else
  echo "lamp.sh: neither curl nor wget in this AMI: cannot read the instance metadata" >&2
  md() { echo unknown; }
fi
ID=$(md instance-id); IP=$(md local-ipv4); AZ=$(md placement/availability-zone); TYPE=$(md instance-type)
echo "lamp.sh: $ID ($TYPE) at $IP in $AZ"

# On AWS this would start with `dnf install -y httpd php mariadb105-server`; ec2lab instances
# are offline, so the packages must already be in the AMI (scripts/build-ami.sh debian).

mkdir -p /var/www/html
if command -v apache2ctl >/dev/null && command -v php >/dev/null; then
  cat > /var/www/html/index.php <<'PHP'
<?php
function md($path) {
  $t = stream_context_create(['http' => ['method' => 'PUT', 'header' => "X-aws-ec2-metadata-token-ttl-seconds: 60"]]);
  $token = file_get_contents('http://169.254.169.254/latest/api/token', false, $t);
  $c = stream_context_create(['http' => ['header' => "X-aws-ec2-metadata-token: $token"]]);
  return file_get_contents("http://169.254.169.254/latest/meta-data/$path", false, $c);
}
$id = md('instance-id'); $ip = md('local-ipv4'); $az = md('placement/availability-zone');
?>
<html><head><title>ec2lab LAMP</title></head><body>
<h1>Hello from <?= htmlspecialchars($id) ?></h1>
<p>Instance ID: <?= htmlspecialchars($id) ?></p>
<p>Private IP: <?= htmlspecialchars($ip) ?></p>
<p>Availability Zone: <?= htmlspecialchars($az) ?></p>
<p>Served by Apache with PHP <?= phpversion() ?></p>
</body></html>
PHP
  rm -f /var/www/html/index.html
  if command -v mysqld_safe >/dev/null; then service mariadb start || service mysql start || true; fi
  apache2ctl start && echo "lamp.sh: Apache with PHP is serving on port 80"
else
  cat > /var/www/html/index.html <<HTML
<html><head><title>ec2lab LAMP</title></head><body>
<h1>Hello from $ID</h1>
<p>Instance ID: $ID</p>
<p>Private IP: $IP</p>
<p>Availability Zone: $AZ</p>
</body></html>
HTML
  cd /var/www/html || exit 1
  if command -v python3 >/dev/null; then
    nohup python3 -m http.server 80 >/var/log/lamp-http.log 2>&1 &
    echo "lamp.sh: no Apache/PHP in this AMI; python3 http.server is serving on port 80"
  elif command -v busybox >/dev/null; then
    busybox httpd -p 80 -h /var/www/html && echo "lamp.sh: no Apache/PHP in this AMI; busybox httpd is serving on port 80"
  else
    echo "lamp.sh: no web server in this AMI (build the Debian AMI with scripts/build-ami.sh debian)"
  fi
fi
