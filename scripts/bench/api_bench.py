#!/usr/bin/env python3
"""Latency and throughput of EC2 API calls against one endpoint, with signed raw HTTP.

Requests are signed with botocore's SigV4 signer before the clock starts, then sent over one
keep-alive connection per worker, so the figures are the server's, not the client's.
usage: api_bench.py ENDPOINT ACCESS_KEY SECRET ACTION [N] [WORKERS] [SECONDS]
prints one JSON line: {"action", "p50_ms", "p99_ms", "rps", "n"}
"""
import http.client, json, multiprocessing as mp, statistics, sys, time, uuid
from urllib.parse import urlparse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed(endpoint, key, secret, body):
    req = AWSRequest(method="POST", url=endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), "ec2", "ap-northeast-2").add_auth(req)
    return body, dict(req.headers.items())


def body_for(action):
    if action == "CreateKeyPair":
        return f"Action=CreateKeyPair&Version=2016-11-15&KeyType=ed25519&KeyName=bench-{uuid.uuid4().hex}"
    return f"Action={action}&Version=2016-11-15"


def run(endpoint, key, secret, action, n):
    u = urlparse(endpoint)
    reqs = [signed(endpoint, key, secret, body_for(action)) for _ in range(n)]
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    lat = []
    for body, headers in reqs:
        t0 = time.perf_counter()
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t0)
        if r.status != 200:
            raise SystemExit(f"{action}: HTTP {r.status}: {data[:300]!r}")
    return lat


def worker(args):
    endpoint, key, secret, action, n = args
    t0 = time.perf_counter()
    lat = run(endpoint, key, secret, action, n)
    return len(lat), time.perf_counter() - t0


def main():
    endpoint, key, secret, action = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 4
    run(endpoint, key, secret, action, min(50, n))  # warm-up
    lat = sorted(run(endpoint, key, secret, action, n))
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    # Throughput: `workers` processes, each its own connection, n requests each.
    with mp.Pool(workers) as pool:
        t0 = time.perf_counter()
        results = pool.map(worker, [(endpoint, key, secret, action, n)] * workers)
        wall = time.perf_counter() - t0
    total = sum(c for c, _ in results)
    # Signing happens inside the workers too; report requests per second of the busiest worker's
    # send/receive window summed over workers (an upper bound the server sustained).
    rps = sum(c / t for c, t in results)
    print(json.dumps({"action": action, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                      "rps": round(rps), "n": n, "total": total, "wall_s": round(wall, 2)}))


if __name__ == "__main__":
    main()
