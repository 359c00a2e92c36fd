#!/bin/bash
# A first user data script: runs once, as root, at the instance's first boot.
# Its output lands in /var/log/cloud-init-output.log and in the console output.
echo "Hello from $(hostname), instance $(curl -s http://169.254.169.254/latest/meta-data/instance-id)"
echo "Zone: $(curl -s http://169.254.169.254/latest/meta-data/placement/availability-zone)"
date > /var/tmp/first-boot
