#!/usr/bin/env python3
"""Boot benchmark: RunInstances → first HTTP 200 from Apache on the LAMP image, against
`systemd-nspawn --boot` booting a copy of the same root filesystem to the same first 200.

usage: boot_bench.py DATA_DIR ENDPOINT AMI_DIR NSPAWN_ROOT NETNS N   (NETNS: a name prefix)

Both sides start from the image as built (no user data): Apache's `/` answers 200 once the
image's enabled apache2.service runs. ec2lab: polled on the instance's public IP (127.x) from
here. nspawn: `--volatile=overlay` (the tree read-only under a tmpfs, like our overlay root),
in a fresh network namespace per boot (NETNS-<n>, loopback only), polled on 127.0.0.1 from inside
it by a poller that is already polling when nspawn starts.
"""
import http.client, os, select, signal, subprocess, sys, time
from lab_api import Api, report

TIMEOUT = 120  # seconds to the first 200 before a boot counts as failed


def first_200(host, deadline):
    """Polls GET http://host/ every 5 ms until 200; the time.monotonic() of that answer."""
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(host, 80, timeout=2)
            c.request("GET", "/")
            status = c.getresponse().status
            c.close()
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    return None


if sys.argv[1] == "--poll":  # the nspawn side's poller, run inside NETNS by the parent
    print("ready", flush=True)
    t = first_200("127.0.0.1", time.monotonic() + TIMEOUT)
    print(t if t else "timeout", flush=True)
    sys.exit(0)

data_dir, endpoint, ami_dir, nspawn_root, netns = sys.argv[1:6]
N = int(sys.argv[6])
call = Api(endpoint, data_dir).call


def tag(xml, name):
    return xml.split(f"<{name}>")[1].split(f"</{name}>")[0]


# 1. ec2lab: RunInstances → first 200 on the public IP, one instance at a time.
ami = tag(call(f"Action=RegisterImage&Version=2016-11-15&Name=bench-lamp&ImageLocation={ami_dir}"), "imageId")
call("Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupName=default&IpPermissions.1.IpProtocol=tcp"
     "&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0")
lab = []
for _ in range(N):
    t0 = time.monotonic()
    xml = call(f"Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t2.micro&MinCount=1&MaxCount=1")
    iid, ip = tag(xml, "instanceId"), tag(xml, "ipAddress")
    t = first_200(ip, t0 + TIMEOUT)
    if t is None:
        raise SystemExit(f"ec2lab: {iid} never answered 200 on http://{ip}/ within {TIMEOUT} s")
    lab.append(t - t0)
    call(f"Action=TerminateInstances&Version=2016-11-15&InstanceId.1={iid}")
    while "<name>terminated</name>" not in call(f"Action=DescribeInstances&Version=2016-11-15&InstanceId.1={iid}"):
        time.sleep(0.05)
lab50 = report("ec2lab RunInstances → first 200 (Apache)", lab, 44, 1)

# 2. systemd-nspawn --boot on a copy of the same rootfs, to the same first 200.
ns, why = [], None
log_path = os.path.join(os.path.dirname(nspawn_root), "nspawn.log")
for n in range(N):
    # A namespace per boot, so nothing from an earlier boot can answer for this one.
    ns_name = f"{netns}-{n}"
    subprocess.run(["ip", "netns", "add", ns_name], check=True)
    subprocess.run(["ip", "netns", "exec", ns_name, "ip", "link", "set", "lo", "up"], check=True)
    poller = subprocess.Popen(["ip", "netns", "exec", ns_name, sys.executable, __file__, "--poll"],
                              stdout=subprocess.PIPE, text=True)
    assert poller.stdout.readline().strip() == "ready"
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        # --kill-signal=SIGKILL: nspawn's SIGTERM below ends the container at once (its
        # shutdown is not measured, and a slow one must not outlive nspawn).
        box = subprocess.Popen(["systemd-nspawn", "--quiet", "--boot", "-D", nspawn_root, "--volatile=overlay",
                                "--register=no", "--keep-unit", "--kill-signal=SIGKILL",
                                f"--network-namespace-path=/run/netns/{ns_name}",
                                f"--machine=ec2lab-bench-{os.getpid()}-{n}"],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # The poller's answer, unless nspawn gives up first.
        while not select.select([poller.stdout], [], [], 0.1)[0] and box.poll() is None:
            pass
        answer = poller.stdout.readline().strip() if box.poll() is None else "exited"
        poller.kill()
        poller.wait()
        box.send_signal(signal.SIGTERM)
        try:
            box.wait(timeout=30)
        except subprocess.TimeoutExpired:
            box.kill()
            box.wait()
    subprocess.run(["ip", "netns", "del", ns_name])
    if answer in ("timeout", "exited"):
        tail = open(log_path, errors="replace").read().strip().splitlines()[-15:]
        why = (f"nspawn exited with status {box.returncode}" if answer == "exited"
               else f"no 200 within {TIMEOUT} s") + ":\n    " + "\n    ".join(tail)
        break
    ns.append(float(answer) - t0)
if why:
    print(f"systemd-nspawn --boot cannot serve here: {why}", flush=True)
else:
    ns50 = report("systemd-nspawn --boot → first 200 (Apache)", ns, 44, 1)
    print(f"ratio: ec2lab / nspawn = {lab50/ns50:.3f}x (target <= 0.25x)", flush=True)
