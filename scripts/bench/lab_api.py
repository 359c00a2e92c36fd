"""The lab's EC2 API for the benchmark scripts: SigV4-signed Query calls over one kept HTTP
connection, with the credentials the daemon wrote into its data dir; and their p50/p95 lines."""
import http.client, json, os, statistics
from urllib.parse import urlparse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class Api:
    def __init__(self, endpoint, data_dir):
        creds = json.load(open(os.path.join(data_dir, "credentials.json")))
        self.endpoint = endpoint
        self.creds = Credentials(creds["access_key_id"], creds["secret_access_key"])
        u = urlparse(endpoint)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def call(self, body):
        """POSTs a Query body (`Action=…&Version=…`); the XML answer, or exits on an error."""
        req = AWSRequest(method="POST", url=self.endpoint + "/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        SigV4Auth(self.creds, "ec2", "ap-northeast-2").add_auth(req)
        self.conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        r = self.conn.getresponse()
        data = r.read().decode()
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}: {data[:400]}")
        return data


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def report(name, xs, width=34, digits=2):
    """Prints one `NAME p50 … ms p95 … ms (n=…)` line; returns the median (seconds)."""
    p50, p95 = statistics.median(xs) * 1000, pct(xs, 0.95) * 1000
    print(f"{name:<{width}} p50 {p50:{digits + 5}.{digits}f} ms   p95 {p95:{digits + 5}.{digits}f} ms   (n={len(xs)})",
          flush=True)
    return statistics.median(xs)
