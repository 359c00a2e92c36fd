# Escape attempts, one group (see ../attempts.py: the framework these run in).

# --- chroot -------------------------------------------------------------------------------

@attempt("chroot_breakout")
def _():
    root = os.stat("/")

    def child():
        d = "/root/.ec2lab-chroot-jail"
        os.makedirs(d, exist_ok=True)
        os.chroot(d)  # cwd stays outside the new root: the classic breakout
        for _i in range(256):
            os.chdir("..")
        os.chroot(".")
        now = os.stat("/")
        seen = host_visible()
        if seen:
            return "after the breakout: " + seen
        if (now.st_dev, now.st_ino) != (root.st_dev, root.st_ino):
            return "the breakout reached a root other than the instance's: %s" % sorted(os.listdir("/"))[:8]
    try:
        return in_child(child)
    finally:
        try:
            os.rmdir("/root/.ec2lab-chroot-jail")
        except OSError:
            pass


@attempt("chroot_via_proc1_root")
def _():
    def child():
        try:
            os.chroot("/proc/1/root/")
            os.chdir("/")
        except OSError:
            return None
        return host_visible()
    return in_child(child)


# --- network ------------------------------------------------------------------------------

def ip(*args):
    # iproute2 comes with the host's /usr; without it the attempt errors (never a silent PASS)
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


def netlink_newlink_dummy(name):
    """RTM_NEWLINK for a dummy interface over raw netlink (no tool needed); returns errno."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        def attr(t, payload):
            ln = 4 + len(payload)
            return struct.pack("HH", ln, t) + payload + b"\0" * ((4 - ln % 4) % 4)
        kind = attr(1, b"dummy\0")  # IFLA_INFO_KIND
        body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + attr(3, name.encode() + b"\0") + attr(18 | 0x8000, kind)
        msg = struct.pack("IHHII", 16 + len(body), 16, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body
        s.send(msg)  # RTM_NEWLINK, NLM_F_REQUEST|ACK|CREATE|EXCL
        data = s.recv(4096)
        return -struct.unpack_from("i", data, 16)[0]
    finally:
        s.close()


@attempt("net_admin_link_add")
def _():
    name = "esc%s" % NONCE[:8]
    e = netlink_newlink_dummy(name)
    if e == 0 or os.path.exists("/sys/class/net/" + name):
        ip("link", "del", name)
        return "created interface %s" % name


@attempt("net_admin_addr_add_other_ip")
def _():
    rc, out = ip("addr", "add", CFG["b_ip"] + "/32", "dev", "eth0")
    if rc == 0:
        ip("addr", "del", CFG["b_ip"] + "/32", "dev", "eth0")
        return "added instance B's address %s to eth0" % CFG["b_ip"]


@attempt("net_admin_route_add")
def _():
    rc, out = ip("route", "add", "10.254.0.0/16", "dev", "eth0")
    if rc == 0:
        ip("route", "del", "10.254.0.0/16", "dev", "eth0")
        return "added a route"


@attempt("net_admin_change_mac")
def _():
    rc, out = ip("link", "set", "dev", "eth0", "address", "02:00:00:ec:2e:5c")
    if rc == 0:
        return "changed eth0's MAC address"


def nft_newtable(name, msgtype):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    try:
        def attr(t, payload):
            ln = 4 + len(payload)
            return struct.pack("HH", ln, t) + payload + b"\0" * ((4 - ln % 4) % 4)
        nfgen = lambda fam, res: struct.pack("BBH", fam, 0, socket.htons(res))
        begin = struct.pack("IHHII", 20, 0x10, 1, 1, 0) + nfgen(0, 10)  # NFNL_MSG_BATCH_BEGIN
        body = nfgen(2, 0) + attr(1, name.encode() + b"\0")  # AF_INET, NFTA_TABLE_NAME
        tab = struct.pack("IHHII", 16 + len(body), (10 << 8) | msgtype, 0x1 | 0x4 | 0x400, 2, 0) + body
        end = struct.pack("IHHII", 20, 0x11, 1, 3, 0) + nfgen(0, 10)
        s.send(begin + tab + end)
        s.settimeout(2)
        while True:
            data = s.recv(4096)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _f, seq, _p = struct.unpack_from("IHHII", data, off)
                if typ == 2:  # NLMSG_ERROR: a refusal of the batch, or the table's own ack
                    err = -struct.unpack_from("i", data, off + 16)[0]
                    if err != 0 or seq == 2:
                        return err
                off += max(ln, 16)
    except socket.timeout:
        return errno.ETIMEDOUT
    finally:
        s.close()


@attempt("net_admin_nftables_table")
def _():
    name = "ec2lab_escape_" + NONCE[:8]
    e = nft_newtable(name, 0)  # NFT_MSG_NEWTABLE
    if e == 0:
        nft_newtable(name, 2)  # NFT_MSG_DELTABLE
        return "created nftables table %s" % name


@attempt("net_af_packet_sniff_other_instance")
def _():
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    except OSError:
        return None
    b = socket.inet_aton(CFG["b_ip"])
    s.settimeout(0.2)
    deadline = time.time() + 1.5
    try:
        while time.time() < deadline:
            try:
                frame = s.recv(2048)
            except socket.timeout:
                continue
            if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and b in (frame[26:30], frame[30:34]):
                return "sniffed a packet of instance B"
    finally:
        s.close()


@attempt("net_raw_spoof_source_to_imds")
def _():
    # IP_FREEBIND lets a socket bind to an address it does not have: pretend to be B.
    try:
        out = http_get("169.254.169.254", 80, "/latest/meta-data/instance-id", bind=CFG["b_ip"], freebind=True)
    except OSError:
        return None
    if CFG["b_id"] in out:
        return "got B's metadata with a spoofed source address"


def host_addresses():
    addrs = ["127.0.0.1", "169.254.169.254"]
    gw = default_gateway()
    if gw:
        addrs.append(gw)
    return addrs


@attempt("host_loopback_listener_unreachable")
def _():
    hits = [a for a in host_addresses() if tcp_reaches(a, CFG["host_listener_port"])]
    if hits:
        return "connected to the host's listener via " + " ".join(hits)


@attempt("host_api_port_unreachable")
def _():
    hits = [a for a in host_addresses() if tcp_reaches(a, CFG["api_port"])]
    if hits:
        return "connected to the daemon's API via " + " ".join(hits)


@attempt("host_ssh_gateway_port_via_router")
def _():
    gw = default_gateway()
    if gw and tcp_reaches(gw, CFG["ssh_port"]):
        return "reached the host's gateway port %d via %s" % (CFG["ssh_port"], gw)


@attempt("imds_answers_own_identity_only")
def _():
    try:
        out = http_get("169.254.169.254", 80, "/latest/meta-data/instance-id")
    except OSError as e:
        return "metadata service unreachable: %s" % e
    if CFG["b_id"] in out:
        return "IMDS answered with B's id"
    if CFG["a_id"] not in out:
        return "IMDS did not answer with our own id: %r" % out[-80:]


@attempt("imds_forwarded_header_tricks")
def _():
    hdrs = ["X-Forwarded-For: " + CFG["b_ip"], "X-Real-IP: " + CFG["b_ip"],
            "Forwarded: for=" + CFG["b_ip"]]
    try:
        out = http_get("169.254.169.254", 80, "/latest/meta-data/instance-id", headers=hdrs)
    except OSError:
        return None
    if CFG["b_id"] in out:
        return "forwarding headers made IMDS answer as B"


@attempt("imds_path_to_other_instance")
def _():
    for path in ("/latest/meta-data/../../%s/meta-data/instance-id" % CFG["b_id"],
                 "/%s/latest/meta-data/instance-id" % CFG["b_id"],
                 "/latest/meta-data/instance-id?instance=" + CFG["b_id"]):
        try:
            out = http_get("169.254.169.254", 80, path)
        except OSError:
            continue
        if CFG["b_id"] in out:
            return "IMDS path %s answered as B" % path


@attempt("other_instance_files_invisible")
def _():
    if os.path.exists("/tmp/secret-b-" + NONCE):
        return "sees B's /tmp"


@attempt("other_instance_processes_invisible")
def _():
    for p in pids():
        if "marker-of-b-" + NONCE in cmdline(p):
            return "sees B's process %d" % p
