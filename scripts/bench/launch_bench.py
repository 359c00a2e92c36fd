#!/usr/bin/env python3
"""Launch benchmark: RunInstances → first successful `ec2lab exec i-… true`, against bwrap and
crun starting the same root filesystem; then density (N idle t2.nano instances).

usage: launch_bench.py EC2LAB_BIN DATA_DIR ENDPOINT ROOTFS USR_BINDS N DENSITY
"""
import json, os, subprocess, sys, tempfile, time
from lab_api import Api, report

ec2lab, data_dir, endpoint, rootfs, usr_binds = sys.argv[1:6]
N, DENSITY = int(sys.argv[6]), int(sys.argv[7])
binds = [b for b in usr_binds.split(",") if b]
call = Api(endpoint, data_dir).call


def ids_in(xml):
    return [s.split("</instanceId>")[0] for s in xml.split("<instanceId>")[1:]]


ami = call("Action=DescribeImages&Version=2016-11-15&Filter.1.Name=name&Filter.1.Value.1=lab-linux")
ami = ami.split("<imageId>")[1].split("</imageId>")[0]


# 1. ec2lab: RunInstances → first `ec2lab exec … true` that succeeds.
lab, launched = [], []
for _ in range(N):
    t0 = time.perf_counter()
    iid = ids_in(call(f"Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t2.nano&MinCount=1&MaxCount=1"))[0]
    while subprocess.run([ec2lab, "exec", "--data-dir", data_dir, iid, "--", "true"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        pass
    lab.append(time.perf_counter() - t0)
    launched.append(iid)
lab50 = report("ec2lab RunInstances → exec true", lab)
# enter alone
enter = []
for iid in launched[:N]:
    t0 = time.perf_counter()
    subprocess.run([ec2lab, "exec", "--data-dir", data_dir, iid, "--", "true"], check=True)
    enter.append(time.perf_counter() - t0)
report("ec2lab exec true (running instance)", enter)
for i in range(0, len(launched), 50):
    call("Action=TerminateInstances&Version=2016-11-15&" + "&".join(f"InstanceId.{n+1}={x}" for n, x in enumerate(launched[i:i+50])))

# 2. bwrap on the same rootfs (namespaces like ours, no cgroup, no overlay).
bw = []
for _ in range(N):
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--bind", rootfs, "/"]
    for b in binds:
        cmd += ["--ro-bind", b, b]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "true"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    bw.append(time.perf_counter() - t0)
bw50 = report("bwrap true (same rootfs)", bw)

# 3. An OCI runtime on the same rootfs: crun, or runc where crun refuses the host's cgroup
#    layout (crun 1.8 rejects cgroup v1/v2 "hybrid" hosts like this one).
cr50 = None
with tempfile.TemporaryDirectory() as bundle:
    subprocess.run(["runc" if subprocess.run(["sh", "-c", "command -v crun"]).returncode else "crun", "spec"],
                   cwd=bundle, check=True, stdout=subprocess.DEVNULL)
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg["linux"].pop("resources", None)
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
    cfg["mounts"] += [{"destination": b, "type": "bind", "source": b, "options": ["rbind", "ro"]} for b in binds]
    json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
    for runtime in (["crun", "--cgroup-manager=disabled"], ["runc"]):
        probe = subprocess.run(runtime + ["run", "-b", bundle, f"probe{os.getpid()}"], capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"{runtime[0]}: cannot run here: {(probe.stderr or probe.stdout).strip()[:200]}", flush=True)
            continue
        cr = []
        for n in range(N):
            t0 = time.perf_counter()
            subprocess.run(runtime + ["run", "-b", bundle, f"bench{os.getpid()}-{n}"], check=True)
            cr.append(time.perf_counter() - t0)
        cr50 = report(f"{runtime[0]} run true (same rootfs)", cr)
        oci = runtime[0]
        break
print(f"ratio: ec2lab launch→exec / bwrap = {lab50/bw50:.2f}x" + (f", / {oci} = {lab50/cr50:.2f}x" if cr50 else ""), flush=True)

# 4. Density: DENSITY idle t2.nano instances.
def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

daemon_pid = int(json.load(open(os.path.join(data_dir, "daemon.json")))["pid"])
before = pss_kib(daemon_pid)
t0 = time.perf_counter()
ids = []
while len(ids) < DENSITY:
    n = min(50, DENSITY - len(ids))
    ids += ids_in(call(f"Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t2.nano&MinCount={n}&MaxCount={n}"))
elapsed = time.perf_counter() - t0
time.sleep(3)  # let boots settle (user data, fingerprints)
inst_pss = 0
nprocs = 0
for iid in ids:
    for base in ("/sys/fs/cgroup/memory/ec2lab", "/sys/fs/cgroup/pids/ec2lab", "/sys/fs/cgroup/ec2lab"):
        p = os.path.join(base, iid, "cgroup.procs")
        if os.path.exists(p):
            pids = [int(x) for x in open(p).read().split()]
            nprocs += len(pids)
            inst_pss += sum(pss_kib(x) for x in pids)
            break
growth = pss_kib(daemon_pid) - before
per = (inst_pss + growth) / len(ids)
print(f"density: {len(ids)} t2.nano instances started in {elapsed:.2f} s ({elapsed/len(ids)*1000:.1f} ms each); "
      f"{nprocs} processes, PSS {inst_pss/1024:.1f} MiB + daemon growth {growth/1024:.1f} MiB "
      f"= {per:.0f} KiB per idle instance", flush=True)
for i in range(0, len(ids), 50):
    call("Action=TerminateInstances&Version=2016-11-15&" + "&".join(f"InstanceId.{n+1}={x}" for n, x in enumerate(ids[i:i+50])))
