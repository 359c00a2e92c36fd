# Escape attempts run inside an ec2lab instance as its root. tests/escape.rs makes one script of
# this file (the framework and `main`), then every `attempts/NN_*.py` in name order (the
# attempts, grouped by subject), then a last line `main()`, and pipes it into
# `ec2lab exec --user root ID -- python3 - CONFIG_JSON`.
#
# Every attempt prints exactly one line: `PASS name` when it was refused (or, for a resource
# attempt, when the limit held) or `FAIL name: detail` when it got through. An attempt that
# raises prints `FAIL name: error ...` so a crash can never look like a refusal. Attempts whose
# outcome only the host can see (host files, the kernel log, the host's hostname, the keyring)
# print PASS for their own part and leave markers the Rust side checks.
#
# Only raw syscalls (ctypes) and the standard library are used, so no tool in the image matters.
# Attempts that would harm the host if they got through are made harmless: clocks are set to
# the time they already show, sysctls are written with their current value, reboot() is asked
# only for CAD_OFF, kexec only for "unload".

import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

CFG = json.loads(sys.argv[1])
NONCE = CFG["nonce"]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ATTEMPTS = []
REFUSED = (errno.EPERM, errno.EACCES, errno.EROFS, errno.ENOSYS)

# x86_64 syscall numbers
NR = dict(ptrace=101, syslog=103, adjtimex=159, chroot=161, acct=163, settimeofday=164,
          mount=165, umount2=166, swapoff=168, reboot=169, sethostname=170, setdomainname=171,
          ioperm=173, init_module=175, delete_module=176, clock_settime=227, kexec_load=246,
          add_key=248, request_key=249, keyctl=250, unshare=272, perf_event_open=298,
          name_to_handle_at=303, open_by_handle_at=304, clock_adjtime=305, setns=308,
          process_vm_readv=310, finit_module=313, kexec_file_load=320, bpf=321,
          userfaultfd=323, open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
          fsmount=432, fspick=433, pidfd_open=434, pidfd_getfd=438, mount_setattr=442)


def sc(name, *args):
    """A raw syscall: returns (result, errno)."""
    conv = []
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        if isinstance(a, bytes):
            a = ctypes.c_char_p(a)
        elif isinstance(a, int):
            a = ctypes.c_long(a)
        conv.append(a)
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *conv)
    return r, ctypes.get_errno()


def ename(e):
    return errno.errorcode.get(e, str(e))


def attempt(name):
    def deco(fn):
        ATTEMPTS.append((name, fn))
        return fn
    return deco


def in_child(fn, timeout=20.0):
    """Runs fn() in a forked child (namespaces, chroot and limits stay there); returns what it
    returned (a str or None) or a description of how the child died."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = fn()
            msg = "" if out is None else "F" + str(out)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            msg = "Eerror in child: %r" % (e,)
        os.write(w, msg.encode()[:4000] or b"-")
        os._exit(0)
    os.close(w)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([r], [], [], 0.2)
        if ready:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = data.decode(errors="replace")
    if text in ("", "-"):
        if os.WIFSIGNALED(status) and not data:
            return "CHILD-SIGNAL %d" % os.WTERMSIG(status)
        return None
    if text.startswith("E"):
        raise RuntimeError(text[1:])
    return text[1:]


def host_visible():
    """Names what of the host this process can see, or None."""
    for p in (CFG["host_marker"], CFG["data_dir"], CFG["host_root_marker"]):
        if os.path.exists(p):
            return "sees host path " + p
    return None


def try_open(path, flags=os.O_RDONLY):
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        return None, e.errno
    return fd, 0


def write_current(path):
    """Writes a file's current value back to it; returns a FAIL detail if the write went in."""
    try:
        with open(path) as f:
            cur = f.read()
    except OSError as e:
        return None  # not readable: nothing to write back
    if "[" in cur:  # sysfs choice lists: "always [madvise] never"
        cur = cur[cur.index("[") + 1:cur.index("]")]
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return None
    try:
        os.write(fd, (cur.strip() or "\n").encode())
    except OSError as e:
        if e.errno in REFUSED:
            return None
        return "write reached the kernel (%s)" % ename(e.errno)
    finally:
        os.close(fd)
    return "wrote " + path


def ns_id(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def mountpoint_dirs():
    return [d for d in ("/mnt", "/media", "/srv") if os.path.isdir(d)] or ["/tmp"]


MNT = mountpoint_dirs()[0]


def mount(src, target, fstype, flags=0, data=None):
    r, e = sc("mount", src or b"none", target, fstype or 0, flags, data or 0)
    return r == 0, e


def umount(target):
    sc("umount2", target, 2)  # MNT_DETACH


def mounts_fresh(fstype):
    """Can a fresh filesystem of this type be mounted on MNT? (unmounted again at once)"""
    ok, e = mount(fstype, MNT, fstype)
    if ok:
        umount(MNT)
    return ok


def http_get(ip, port, path, headers=(), bind=None, freebind=False, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if freebind:
            s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        if bind:
            s.bind((bind, 0))
        s.connect((ip, port))
        req = "GET %s HTTP/1.0\r\nHost: %s\r\n%s\r\n" % (path, ip, "".join(h + "\r\n" for h in headers))
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")
    finally:
        s.close()


def tcp_reaches(ip, port):
    s = socket.socket()
    s.settimeout(1.5)
    try:
        s.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def default_gateway():
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == "00000000":
                return socket.inet_ntoa(struct.pack("<I", int(p[2], 16)))
    return None


# --- main ---------------------------------------------------------------------------------

def main():
    os.chdir("/")
    only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else None
    names = [n for n, _f in ATTEMPTS]
    assert len(names) == len(set(names)), "duplicate attempt names"
    print("ATTEMPTS " + ",".join(names), flush=True)
    for name, fn in ATTEMPTS:
        if only and name not in only:
            continue
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - an attempt that crashed is not a refusal
            out = "error: %r" % (e,)
        line = ("PASS " + name) if out is None else ("FAIL %s: %s" % (name, str(out).replace("\n", " ")))
        print(line, flush=True)
    print("DONE", flush=True)
