# Escape attempts run inside an ec2lab instance as its root (tests/escape.rs pipes this file into
# `ec2lab exec --user root ID -- python3 - CONFIG_JSON`).
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


# --- host processes and /proc/1 -----------------------------------------------------------

def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@attempt("proc_host_pid1_hidden")
def _():
    mine = cmdline(1)
    if CFG["host_pid1_cmdline"] and mine.strip() == CFG["host_pid1_cmdline"].strip():
        return "/proc/1 is the host's PID 1: " + mine


@attempt("proc_few_processes")
def _():
    n = len(pids())
    if n > 50:
        return "%d processes visible" % n


@attempt("proc_daemon_invisible")
def _():
    for p in pids():
        c = cmdline(p)
        if p != os.getpid() and ("serve --data-dir" in c or "ec2lab-test" in c):
            return "host daemon visible as pid %d: %s" % (p, c[:120])


@attempt("proc1_root_not_openable")
def _():
    fd, e = try_open("/proc/1/root", os.O_RDONLY | os.O_DIRECTORY)
    if fd is not None:
        os.close(fd)
        hv = None
        if os.path.exists("/proc/1/root" + CFG["host_marker"]):
            hv = "; it reaches the host root"
        return "opened /proc/1/root" + (hv or "")


@attempt("proc1_exe_not_openable")
def _():
    fd, e = try_open("/proc/1/exe")
    if fd is not None:
        target = os.readlink("/proc/1/exe") if os.path.islink("/proc/1/exe") else "?"
        os.close(fd)
        return "opened /proc/1/exe (%s)" % target


@attempt("proc1_fd_not_openable")
def _():
    try:
        names = os.listdir("/proc/1/fd")
    except OSError:
        return None
    for n in names:
        p = "/proc/1/fd/" + n
        try:
            target = os.readlink(p)
            return "PID 1's fd %s readable: %s" % (n, target)
        except OSError:
            pass
        fd, e = try_open(p)
        if fd is not None:
            os.close(fd)
            return "opened PID 1's fd " + n


@attempt("proc1_console_fd_not_writable")
def _():
    for n in (0, 1, 2):
        fd, e = try_open("/proc/1/fd/%d" % n, os.O_WRONLY | os.O_APPEND)
        if fd is not None:
            os.close(fd)
            return "opened init's fd %d for writing" % n


@attempt("proc_exe_no_host_binary")
def _():
    for p in pids():
        link = "/proc/%d/exe" % p
        try:
            target = os.readlink(link)
            fd = os.open(link, os.O_RDONLY)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            try:
                inside = os.stat(target)
                same = (inside.st_dev, inside.st_ino) == (st.st_dev, st.st_ino)
            except OSError:
                same = False
            if not same:
                return "read fd to a host file through %s (%s)" % (link, target)
        finally:
            os.close(fd)


@attempt("proc_environ_no_host_secrets")
def _():
    for p in [1, os.getpid()]:
        try:
            with open("/proc/%d/environ" % p, "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        for bad in ("AWS_SECRET", "CARGO_", "EC2LAB_LOG", CFG["data_dir"]):
            if bad in env:
                return "pid %d's environment holds %s" % (p, bad)


@attempt("proc_mounts_no_host_paths")
def _():
    for f in ("/proc/self/mountinfo", "/proc/1/mountinfo", "/proc/mounts"):
        try:
            text = open(f).read()
        except OSError:
            continue
        if CFG["data_dir"] in text or CFG["tmp_dir"] in text:
            return "%s names the host data dir" % f


@attempt("kill_pid1_ignored")
def _():
    def start_time():
        return open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19]
    before = start_time()
    try:
        os.kill(1, signal.SIGKILL)
    except OSError:
        return None
    time.sleep(0.2)
    if start_time() != before:
        return "SIGKILL ended the instance's init"


@attempt("ptrace_pid1")
def _():
    r, e = sc("ptrace", 16, 1, 0, 0)  # PTRACE_ATTACH
    if r == 0:
        time.sleep(0.05)
        sc("ptrace", 17, 1, 0, 0)  # PTRACE_DETACH
        return "attached to PID 1"


@attempt("process_vm_readv_pid1")
def _():
    buf = ctypes.create_string_buffer(16)
    local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 16)
    addr = 0x400000  # PID 1's first mapping when /proc/1/maps is readable
    try:
        addr = int(open("/proc/1/maps").readline().split("-")[0], 16)
    except (OSError, ValueError):
        pass
    remote = (ctypes.c_void_p * 2)(addr, 16)
    r, e = sc("process_vm_readv", 1, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0)
    if r > 0:
        return "read %d bytes of PID 1's memory" % r
    if e not in (errno.EPERM, errno.ESRCH, errno.ENOSYS):
        return "process_vm_readv got past the permission check (%s)" % ename(e)


@attempt("pidfd_getfd_pid1")
def _():
    pfd, e = sc("pidfd_open", 1, 0)
    if pfd < 0:
        return None
    try:
        for n in range(0, 16):
            fd, e = sc("pidfd_getfd", pfd, n, 0)
            if fd >= 0:
                target = os.readlink("/proc/self/fd/%d" % fd)
                os.close(fd)
                return "took PID 1's fd %d (%s)" % (n, target)
    finally:
        os.close(pfd)


# --- host files and the data dir ----------------------------------------------------------

@attempt("host_marker_invisible")
def _():
    if os.path.exists(CFG["host_marker"]):
        return "host file %s visible" % CFG["host_marker"]


@attempt("host_data_dir_invisible")
def _():
    for p in (CFG["data_dir"], CFG["data_dir"] + "/credentials.json", CFG["tmp_dir"]):
        if os.path.exists(p):
            return "host path %s visible" % p


@attempt("host_var_lib_ec2lab_invisible")
def _():
    for name in ("credentials.json", "daemon.json", "volumes", "run", "store.db", "aws"):
        if os.path.exists("/var/lib/ec2lab/" + name):
            return "/var/lib/ec2lab/%s exists: the host's data dir" % name


@attempt("host_shadow_invisible")
def _():
    import hashlib
    try:
        data = open("/etc/shadow", "rb").read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() == CFG["host_shadow_sha256"]:
        return "/etc/shadow is the host's"


@attempt("host_root_home_invisible")
def _():
    if os.path.exists(CFG["host_root_marker"]):
        return "the host's /root is visible"


@attempt("usr_not_writable")
def _():
    p = "/usr/.ec2lab-escape-%s-usr" % NONCE
    try:
        with open(p, "w") as f:
            f.write("x")
    except OSError:
        return None
    os.unlink(p)
    return "wrote " + p


# --- mounts -------------------------------------------------------------------------------

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384


def usr_probe(tag):
    p = "/usr/.ec2lab-escape-%s-%s" % (NONCE, tag)
    try:
        with open(p, "w") as f:
            f.write("escaped")
        return "wrote " + p
    except OSError:
        return None


@attempt("remount_usr_rw")
def _():
    ok, e = mount(None, "/usr", None, MS_REMOUNT | MS_BIND)
    return usr_probe("remount") if ok else None


@attempt("remount_root_rw_usr_bind")
def _():
    def child():
        r, e = sc("unshare", 0x20000)  # CLONE_NEWNS
        ok, e = mount("/usr", MNT, None, MS_BIND)
        if not ok:
            return None
        ok, e = mount(None, MNT, None, MS_REMOUNT | MS_BIND)
        if ok:
            p = MNT + "/.ec2lab-escape-%s-bind" % NONCE
            try:
                open(p, "w").write("x")
                return "bind of /usr remounted rw and written"
            except OSError:
                pass
        umount(MNT)
        return "bind-mounted /usr at " + MNT
    return in_child(child)


@attempt("mount_tmpfs")
def _():
    ok, e = mount(b"none", MNT, b"tmpfs")
    if ok:
        umount(MNT)
        return "mounted a tmpfs on " + MNT


@attempt("mount_proc_unmasked")
def _():
    ok, e = mount(b"proc", MNT, b"proc")
    if ok:
        umount(MNT)
        return "mounted a fresh proc (masks bypassed)"


@attempt("mount_sysfs_rw")
def _():
    ok, e = mount(b"sysfs", MNT, b"sysfs")
    if ok:
        umount(MNT)
        return "mounted sysfs"


@attempt("mount_setattr_usr_rw")
def _():
    attr = struct.pack("QQQQ", 0, 1, 0, 0)  # attr_set=0, attr_clr=MOUNT_ATTR_RDONLY
    buf = ctypes.create_string_buffer(attr, len(attr))
    r, e = sc("mount_setattr", -100, "/usr", 0, ctypes.addressof(buf), len(attr))
    if r == 0:
        return usr_probe("setattr") or "cleared MOUNT_ATTR_RDONLY on /usr"


@attempt("fsopen_fsmount_move_mount")
def _():
    fs, e = sc("fsopen", "tmpfs", 1)
    if fs < 0:
        return None
    try:
        r, e = sc("fsconfig", fs, 6, 0, 0, 0)  # FSCONFIG_CMD_CREATE
        if r < 0:
            return None
        m, e = sc("fsmount", fs, 1, 0)
        if m < 0:
            return None
        r, e = sc("move_mount", m, "", -100, MNT, 4)  # MOVE_MOUNT_F_EMPTY_PATH
        os.close(m)
        if r == 0:
            umount(MNT)
            return "fsmount'ed a tmpfs and moved it to " + MNT
        return "fsmount made a detached tmpfs"
    finally:
        os.close(fs)


@attempt("open_tree_clone_usr")
def _():
    t, e = sc("open_tree", -100, "/usr", 1 | 0x80000)  # OPEN_TREE_CLONE | O_CLOEXEC
    if t < 0:
        return None
    try:
        r, e = sc("move_mount", t, "", -100, MNT, 4)
        if r == 0:
            ok, e2 = mount(None, MNT, None, MS_REMOUNT | MS_BIND)
            umount(MNT)
            return "cloned /usr and attached it at %s%s" % (MNT, " rw" if ok else "")
        return "cloned the /usr mount"
    finally:
        os.close(t)


@attempt("move_mount_run")
def _():
    r, e = sc("move_mount", -100, "/run", -100, MNT, 0)
    if r == 0:
        sc("move_mount", -100, MNT, -100, "/run", 0)
        return "moved the /run mount"


@attempt("fspick_usr_reconfigure")
def _():
    fd, e = sc("fspick", -100, "/usr", 0)
    if fd >= 0:
        os.close(fd)
        return "fspick on /usr"


@attempt("umount_proc_mask")
def _():
    r, e = sc("umount2", "/proc/sysrq-trigger", 0)
    if r == 0:
        return "unmounted the mask over /proc/sysrq-trigger"


@attempt("pivot_root_again")
def _():
    def child():
        sc("unshare", 0x20000)
        r, e = libc.syscall(155, b"/usr", b"/usr/lib"), ctypes.get_errno()
        if r == 0:
            return "pivot_root succeeded"
    return in_child(child)


# --- user namespaces and setns -----------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x20000, 0x10000000, 0x20000000


def enter_userns():
    uid, gid = os.getuid(), os.getgid()
    r, e = sc("unshare", CLONE_NEWUSER | CLONE_NEWNS)
    if r != 0:
        return False
    try:
        open("/proc/self/setgroups", "w").write("deny")
        open("/proc/self/uid_map", "w").write("0 %d 1" % uid)
        open("/proc/self/gid_map", "w").write("0 %d 1" % gid)
    except OSError:
        pass
    return True


@attempt("unshare_userns_mount_tmpfs")
def _():
    def child():
        if not enter_userns():
            return None
        ok, e = mount(b"none", MNT, b"tmpfs")
        if ok:
            return "mounted tmpfs in a new user namespace"
    return in_child(child)


@attempt("unshare_userns_remount_usr_rw")
def _():
    def child():
        if not enter_userns():
            return None
        ok, e = mount(None, "/usr", None, MS_REMOUNT | MS_BIND)
        if ok:
            return usr_probe("userns") or "remounted /usr rw in a user namespace"
    return in_child(child)


@attempt("unshare_userns_mount_proc")
def _():
    def child():
        r, e = sc("unshare", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)
        if r != 0:
            return None
        pid = os.fork()
        if pid == 0:
            ok, e = mount(b"proc", MNT, b"proc")
            os._exit(1 if ok else 0)
        _, st = os.waitpid(pid, 0)
        if os.WEXITSTATUS(st) == 1:
            return "mounted proc in a new user+pid namespace"
    return in_child(child)


NAMESPACES = ["mnt", "pid", "net", "uts", "ipc", "user"]

for _ns in NAMESPACES:
    def _mk(ns):
        def check():
            mine = ns_id("/proc/self/ns/" + ns)
            if mine is not None and mine == CFG["host_ns"].get(ns):
                return "shares the host's %s namespace (%s)" % (ns, mine)
        return check
    attempt("ns_%s_not_host" % _ns)(_mk(_ns))


@attempt("setns_into_visible_namespaces")
def _():
    for p in pids():
        for ns in NAMESPACES + ["cgroup"]:
            target = ns_id("/proc/%d/ns/%s" % (p, ns))
            if target is None:
                continue
            if target == CFG["host_ns"].get(ns) and ns != "user":  # user: ns_user_not_host
                return "pid %d is in the host's %s namespace" % (p, ns)

    def child():
        for ns in NAMESPACES:
            try:
                fd = os.open("/proc/1/ns/" + ns, os.O_RDONLY)
            except OSError:
                continue
            sc("setns", fd, 0)
            os.close(fd)
            if ns_id("/proc/self/ns/" + ns) == CFG["host_ns"].get(ns):
                return "setns into /proc/1/ns/%s reached the host's" % ns
        return host_visible()
    return in_child(child)


@attempt("uid_map_not_identity")
def _():
    first = open("/proc/self/uid_map").read().split()
    if first[:2] == ["0", "0"]:
        return "the instance's root is host uid 0 (uid_map %s)" % " ".join(first[:3])


# --- devices ------------------------------------------------------------------------------

def makedev_node(path, kind, major, minor):
    try:
        if os.path.lexists(path):
            os.unlink(path)
        os.mknod(path, 0o600 | kind, os.makedev(major, minor))
        return True
    except OSError:
        return False


def kmsg_write_via(dirname, tag):
    path = os.path.join(dirname, ".ec2lab-kmsg-" + tag)
    if not makedev_node(path, 0o020000, 1, 11):
        return None
    try:
        fd, e = try_open(path, os.O_WRONLY)
        if fd is None:
            return None
        try:
            os.write(fd, ("ec2lab-escape-%s-%s\n" % (NONCE, tag)).encode())
            return "wrote into the kernel log through a node in " + dirname
        except OSError:
            return "opened /dev/kmsg made in " + dirname
        finally:
            os.close(fd)
    finally:
        os.unlink(path)


for _dir, _tag in (("/root", "root"), ("/dev/shm", "devshm"), ("/run", "run"), ("/var/tmp", "vartmp"), ("/tmp", "tmp")):
    def _mk(d, t):
        return lambda: kmsg_write_via(d, t) if os.path.isdir(d) else None
    attempt("mknod_kmsg_" + _tag)(_mk(_dir, _tag))


def node_opens(kind, major, minor, tag, read=0):
    path = "/root/.ec2lab-node-" + tag
    if not makedev_node(path, kind, major, minor):
        return None
    try:
        fd, e = try_open(path)
        if fd is None:
            return None
        try:
            if read:
                data = os.read(fd, read)
                return "read %d bytes from device %d:%d" % (len(data), major, minor)
        except OSError:
            pass
        finally:
            os.close(fd)
        return "opened device %d:%d" % (major, minor)
    finally:
        os.unlink(path)


for _tag, _maj, _min in (("mem", 1, 1), ("port", 1, 4), ("kvm", 10, 232), ("hwrng", 10, 183),
                         ("tty0", 4, 0), ("console", 5, 1), ("loop_control", 10, 237)):
    def _mk(t, a, b):
        return lambda: node_opens(0o020000, a, b, t, read=1 if t == "mem" else 0)
    attempt("mknod_" + _tag)(_mk(_tag, _maj, _min))


@attempt("mknod_host_root_disk")
def _():
    st = os.stat("/usr")  # a bind of the host's /usr: its device is the host's disk
    return node_opens(0o060000, os.major(st.st_dev), os.minor(st.st_dev), "disk", read=512)


@attempt("mknod_every_host_block_device")
def _():
    for entry in sorted(os.listdir("/sys/dev/block")):
        a, b = (int(x) for x in entry.split(":"))
        out = node_opens(0o060000, a, b, "blk", read=512)
        if out:
            return out


DEVICE_PATHS = ["/dev/kvm", "/dev/hwrng", "/dev/console", "/dev/tty0", "/dev/kmsg", "/dev/mem",
                "/dev/port", "/dev/loop-control", "/dev/userfaultfd", "/dev/vda", "/dev/sda"]


@attempt("open_host_devices_by_path")
def _():
    opened = []
    names = set(DEVICE_PATHS)
    try:
        for e in os.listdir("/sys/dev/block"):
            for line in open("/sys/dev/block/%s/uevent" % e):
                if line.startswith("DEVNAME="):
                    names.add("/dev/" + line.strip().split("=", 1)[1])
    except OSError:
        pass
    for p in sorted(names):
        fd, e = try_open(p)
        if fd is not None:
            os.close(fd)
            opened.append(p)
    if opened:
        return "opened " + " ".join(opened)


@attempt("dev_only_standard_nodes")
def _():
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd",
               "stdin", "stdout", "stderr", "mqueue", "console", "core", "log"}
    extra = [n for n in os.listdir("/dev") if n not in allowed]
    for n in extra:
        st = os.lstat("/dev/" + n)
        if (st.st_mode & 0o170000) in (0o020000, 0o060000):
            return "unexpected device /dev/%s" % n
    if os.path.exists("/dev/console"):
        return "/dev/console exists"


# --- /sys and /proc/sys writes ------------------------------------------------------------

@attempt("proc_sys_kernel_hostname")
def _():
    try:
        with open("/proc/sys/kernel/hostname", "w") as f:
            f.write("ec2lab-escape-" + NONCE)
    except OSError:
        return None
    return None  # the instance's own UTS namespace; the host checks its hostname is unchanged


for _p in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/kernel/sysrq",
           "/proc/sys/vm/overcommit_memory", "/proc/sys/fs/file-max",
           "/proc/sys/kernel/randomize_va_space", "/sys/kernel/uevent_helper",
           "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/module/kernel/parameters/panic"):
    def _mk(p):
        return lambda: write_current(p)
    attempt("write" + _p.replace("/", "_").replace("-", "_"))(_mk(_p))


@attempt("write_sys_block_read_ahead")
def _():
    for e in sorted(os.listdir("/sys/block")):
        out = write_current("/sys/block/%s/queue/read_ahead_kb" % e)
        if out:
            return out


@attempt("proc_sysrq_trigger")
def _():
    try:
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("h")  # help: harmless; the host looks for it in its kernel log
    except OSError:
        pass


@attempt("proc_kcore_masked")
def _():
    try:
        with open("/proc/kcore", "rb") as f:
            data = f.read(64)
    except OSError:
        return None
    if data:
        return "read %d bytes of /proc/kcore" % len(data)


@attempt("proc_kallsyms_hidden")
def _():
    try:
        with open("/proc/kallsyms") as f:
            for _i, line in zip(range(50), f):
                if int(line.split()[0], 16) != 0:
                    return "kernel addresses visible in /proc/kallsyms"
    except OSError:
        return None


@attempt("syslog_read_host_kernel_log")
def _():
    buf = ctypes.create_string_buffer(4096)
    r, e = sc("syslog", 3, ctypes.addressof(buf), 4096)  # SYSLOG_ACTION_READ_ALL
    if r > 0:
        return "read %d bytes of the host's kernel log" % r
    fd, e = try_open("/proc/kmsg")
    if fd is not None:
        os.close(fd)
        return "opened /proc/kmsg"


@attempt("binfmt_misc_register")
def _():
    ok, e = mount(b"binfmt_misc", MNT, b"binfmt_misc")
    if ok:
        umount(MNT)
        return "mounted binfmt_misc"
    p = "/proc/sys/fs/binfmt_misc/register"
    if os.path.exists(p):
        try:
            with open(p, "w") as f:
                f.write(":x:")  # invalid on purpose
        except OSError as e:
            if e.errno not in REFUSED:
                return "binfmt_misc register reached the kernel (%s)" % ename(e.errno)


# --- privileged syscalls ------------------------------------------------------------------

def refused(name, *args, ok_errnos=REFUSED, cleanup=None):
    """A syscall that must fail with a refusal errno; any other outcome means it got past the
    permission check (the arguments are chosen so that getting past it is harmless)."""
    r, e = sc(name, *args)
    if r >= 0:
        if cleanup:
            cleanup(r)
        return "%s succeeded" % name
    if e not in ok_errnos:
        return "%s got past the permission check (%s)" % (name, ename(e))


@attempt("init_module")
def _():
    img = ctypes.create_string_buffer(b"\x7fELF" + b"\0" * 60)
    return refused("init_module", ctypes.addressof(img), 64, "")


@attempt("finit_module")
def _():
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return refused("finit_module", fd, "", 0)
    finally:
        os.close(fd)


@attempt("delete_module")
def _():
    return refused("delete_module", "ec2lab_no_such_module", 0o4000)  # O_NONBLOCK


@attempt("bpf_map_create")
def _():
    attr = ctypes.create_string_buffer(struct.pack("IIII", 2, 4, 4, 1) + b"\0" * 112)  # ARRAY
    return refused("bpf", 0, ctypes.addressof(attr), 128, cleanup=os.close)


@attempt("bpf_prog_load_socket_filter")
def _():
    insns = ctypes.create_string_buffer(struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(
        struct.pack("IIQQ", 1, 2, ctypes.addressof(insns), ctypes.addressof(lic)) + b"\0" * 104)
    return refused("bpf", 5, ctypes.addressof(attr), 128, cleanup=os.close)


@attempt("perf_event_open_system_wide")
def _():
    # PERF_TYPE_SOFTWARE / PERF_COUNT_SW_CPU_CLOCK, every process on CPU 0
    attr = ctypes.create_string_buffer(struct.pack("IIQ", 1, 128, 0) + b"\0" * 112)
    return refused("perf_event_open", ctypes.addressof(attr), -1, 0, -1, 0, cleanup=os.close)


@attempt("reboot_cad_off")
def _():
    # In a PID namespace the kernel refuses every command but restart/halt (EINVAL); in the
    # host's it would turn off ctrl-alt-del (harmless). Success means the host's reboot().
    r, e = sc("reboot", 0xfee1dead, 672274793, 0, 0)
    if r == 0:
        return "reboot(LINUX_REBOOT_CMD_CAD_OFF) acted on the host"
    if e not in REFUSED + (errno.EINVAL,):
        return "reboot got past the permission check (%s)" % ename(e)


@attempt("kexec_load_unload")
def _():
    return refused("kexec_load", 0, 0, 0, 0)


@attempt("kexec_file_load_unload")
def _():
    return refused("kexec_file_load", -1, -1, 0, 0, 2)  # KEXEC_FILE_UNLOAD


def now_timespec():
    t = time.clock_gettime(time.CLOCK_REALTIME)
    return ctypes.create_string_buffer(struct.pack("qq", int(t), int((t % 1) * 1e9)))


@attempt("clock_settime")
def _():
    ts = now_timespec()
    return refused("clock_settime", 0, ctypes.addressof(ts))


@attempt("settimeofday")
def _():
    t = time.time()
    tv = ctypes.create_string_buffer(struct.pack("qq", int(t), int((t % 1) * 1e6)))
    return refused("settimeofday", ctypes.addressof(tv), 0)


def timex(modes=0):
    buf = ctypes.create_string_buffer(208)
    struct.pack_into("I", buf, 0, 0)
    sc("adjtimex", ctypes.addressof(buf))  # read: fills in the current values
    tick = struct.unpack_from("q", buf, 88)[0]  # struct timex.tick
    struct.pack_into("I", buf, 0, modes)
    struct.pack_into("q", buf, 88, tick)
    return buf


@attempt("adjtimex_set_tick")
def _():
    tx = timex(0x4000)  # ADJ_TICK, unchanged value
    return refused("adjtimex", ctypes.addressof(tx))


@attempt("clock_adjtime_set_tick")
def _():
    tx = timex(0x4000)
    return refused("clock_adjtime", 0, ctypes.addressof(tx))


@attempt("sethostname")
def _():
    before = os.uname().nodename
    r, e = sc("sethostname", "ec2lab-escape-" + NONCE, len("ec2lab-escape-" + NONCE))
    if r == 0:  # the instance's own UTS namespace: the host checks its own is unchanged
        sc("sethostname", before, len(before))


@attempt("setdomainname")
def _():
    r, e = sc("setdomainname", "escape-" + NONCE, len("escape-" + NONCE))
    if r == 0:
        sc("setdomainname", "(none)", 6)


@attempt("ioperm_port_io")
def _():
    return refused("ioperm", 0x80, 1, 1, cleanup=lambda _r: sc("ioperm", 0x80, 1, 0))


@attempt("iopl")
def _():
    r, e = libc.syscall(172, 3), ctypes.get_errno()
    if r == 0:
        libc.syscall(172, 0)
        return "iopl(3) succeeded"


@attempt("swapoff")
def _():
    return refused("swapoff", "/ec2lab-no-such-swap", ok_errnos=REFUSED)


@attempt("acct")
def _():
    return refused("acct", "/ec2lab-no-such-file", ok_errnos=REFUSED)


@attempt("userfaultfd")
def _():
    out = refused("userfaultfd", 0o2000000, cleanup=os.close)  # O_CLOEXEC, kernel faults too
    if out:
        return out
    fd, e = try_open("/dev/userfaultfd", os.O_RDWR)
    if fd is not None:
        os.close(fd)
        return "opened /dev/userfaultfd"


def file_handle(path):
    buf = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("I", buf, 0, 128)
    mount_id = ctypes.c_int(0)
    r, e = sc("name_to_handle_at", -100, path, ctypes.addressof(buf), ctypes.addressof(mount_id), 0)
    return (buf if r == 0 else None), e


@attempt("open_by_handle_at_roundtrip")
def _():
    h, e = file_handle("/usr")
    if h is None:
        return None
    fd = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
    try:
        r, e = sc("open_by_handle_at", fd, ctypes.addressof(h), os.O_RDONLY)
        if r >= 0:
            os.close(r)
            return "open_by_handle_at works (CAP_DAC_READ_SEARCH)"
    finally:
        os.close(fd)


@attempt("open_by_handle_at_host_root_shocker")
def _():
    # The "shocker" exploit: a handle to inode 2 (the root of the host disk's filesystem),
    # resolved against /usr, which lives on that disk.
    h = ctypes.create_string_buffer(8 + 8)
    struct.pack_into("IiII", h, 0, 8, 1, 2, 0)  # handle_bytes, FILEID_INO32_GEN, ino 2, gen 0
    fd = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
    try:
        r, e = sc("open_by_handle_at", fd, ctypes.addressof(h), os.O_RDONLY | os.O_DIRECTORY)
        if r >= 0:
            names = os.listdir(r)
            os.close(r)
            return "opened the host filesystem's root: %s" % sorted(names)[:6]
    finally:
        os.close(fd)


# --- keyrings -----------------------------------------------------------------------------

KEY_SPEC_USER_KEYRING = -4


@attempt("keyring_host_key_invisible")
def _():
    desc = CFG["host_key_desc"]
    kid, e = sc("keyctl", 10, KEY_SPEC_USER_KEYRING, "user", desc, 0)  # KEYCTL_SEARCH
    if kid < 0:
        kid, e = sc("request_key", "user", desc, 0, 0)
    if kid >= 0:
        buf = ctypes.create_string_buffer(256)
        n, e = sc("keyctl", 11, kid, ctypes.addressof(buf), 256)  # KEYCTL_READ
        return "found the host root's key %d%s" % (kid, ": " + buf.raw[:max(n, 0)].decode(errors="replace") if n > 0 else "")


@attempt("keyring_host_key_by_id")
def _():
    buf = ctypes.create_string_buffer(256)
    n, e = sc("keyctl", 6, CFG["host_key_id"], ctypes.addressof(buf), 256)  # KEYCTL_DESCRIBE
    if n > 0:
        return "described the host's key: " + buf.value.decode(errors="replace")
    n, e = sc("keyctl", 11, CFG["host_key_id"], ctypes.addressof(buf), 256)
    if n > 0:
        return "read the host's key by id"


@attempt("keyring_proc_keys_masked")
def _():
    try:
        text = open("/proc/keys").read() + open("/proc/key-users").read()
    except OSError:
        return None
    if CFG["host_key_desc"] in text or "%08x" % CFG["host_key_id"] in text:
        return "/proc/keys lists the host's key"


@attempt("keyring_add_stays_inside")
def _():
    desc = "ec2lab-escape-inst-" + NONCE
    sc("add_key", "user", desc, "from-the-instance", 17, KEY_SPEC_USER_KEYRING)
    # refused, or added to the instance's own keyring: the host checks its own


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
    try:
        p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
        return p.returncode, p.stdout + p.stderr
    except OSError as e:
        return 127, str(e)


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


# --- cgroups ------------------------------------------------------------------------------

def own_cgroups():
    return open("/proc/self/cgroup").read()


@attempt("cgroup_move_to_host_root")
def _():
    def child():
        before = own_cgroups()
        for base, _dirs, files in os.walk("/sys/fs/cgroup"):
            if "cgroup.procs" in files and base.count("/") <= 4:
                try:
                    with open(base + "/cgroup.procs", "w") as f:
                        f.write(str(os.getpid()))
                except OSError:
                    continue
        after = own_cgroups()
        if after != before:
            return "moved out of the instance's cgroup: %s" % after.replace("\n", " ")[:200]
    return in_child(child)


@attempt("cgroup_fs_not_writable")
def _():
    for base, dirs, _files in os.walk("/sys/fs/cgroup"):
        p = base + "/ec2lab-escape-" + NONCE
        try:
            os.mkdir(p)
        except OSError:
            continue
        os.rmdir(p)
        return "created cgroup " + p
    return None


@attempt("cgroup_mount_v1")
def _():
    for opts in (b"memory", b"pids", b"none,name=escape"):
        ok, e = mount(b"cgroup", MNT, b"cgroup", 0, opts)
        if ok:
            agent = os.path.exists(MNT + "/release_agent")
            umount(MNT)
            return "mounted a cgroup v1 hierarchy (%s)%s" % (opts.decode(), " with release_agent" if agent else "")


@attempt("cgroup_mount_v2")
def _():
    ok, e = mount(b"cgroup2", MNT, b"cgroup2")
    if ok:
        umount(MNT)
        return "mounted cgroup2"


@attempt("cgroup_release_agent")
def _():
    for base, _dirs, files in os.walk("/sys/fs/cgroup"):
        if "release_agent" in files:
            out = write_current(base + "/release_agent")
            if out:
                return out


# --- resources ----------------------------------------------------------------------------

@attempt("fork_bomb_bounded")
def _():
    bound = CFG["pids_max"] + 64
    cap = max(4 * bound, 4096)
    spawned, err = 0, None
    pgid = None
    procs = []
    try:
        while spawned < cap:
            try:
                pid = os.posix_spawn("/bin/sleep", ["sleep", "60"], {}, setpgroup=pgid or 0)
            except OSError as e:
                err = e.errno
                break
            pgid = pgid or pid
            procs.append(pid)
            spawned += 1
    finally:
        if pgid:
            os.killpg(pgid, signal.SIGKILL)
        for p in procs:
            try:
                os.waitpid(p, 0)
            except OSError:
                pass
    # the instance recovers: a fresh process starts again
    if subprocess.run(["true"]).returncode != 0:
        return "the instance did not recover from the fork bomb"
    if err is None:
        return "%d processes and no limit" % spawned
    if spawned > bound:
        return "%d processes before %s (pids limit %d)" % (spawned, ename(err), CFG["pids_max"])


@attempt("memory_hog_oom_inside")
def _():
    limit = CFG["memory_mib"]

    def hog():
        chunks = []
        for _i in range(0, limit * 3 // 2, 16):
            chunks.append(bytearray(16 << 20))  # zero-filled: every page touched
        return "allocated %d MiB in a %d MiB instance" % (len(chunks) * 16, limit)
    try:
        out = in_child(hog, timeout=60)
    except RuntimeError as e:  # MemoryError inside the child: the limit held
        return None if "MemoryError" in str(e) else str(e)
    if out and out.startswith("CHILD-SIGNAL"):
        return None  # OOM-killed inside the instance
    return out


@attempt("fd_exhaustion_bounded")
def _():
    import resource

    def child():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        raised = None
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
            raised = "raised RLIMIT_NOFILE from %d to %d; " % (hard, 1 << 20)
        except (OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        fds, err = [], None
        cap = 70000
        while len(fds) < cap:
            try:
                fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                err = e.errno
                break
        n = len(fds)
        for fd in fds:
            os.close(fd)
        if err == errno.ENFILE:
            return "%sexhausted the host's file table after %d files" % (raised or "", n)
        if n > 65536:
            return "%sheld %d open files" % (raised or "", n)
        if raised:
            return raised + "opened %d files" % n
    return in_child(child, timeout=60)


@attempt("fd_exhaustion_many_processes")
def _():
    # Many processes, each up to its own RLIMIT_NOFILE: the instance as a whole must be bounded
    # far below the host's file table (the issue saw one instance hold 200k entries).
    cap = 262144
    held, kids = 0, []
    release_r, release_w = os.pipe()
    err = None
    try:
        while held < cap and len(kids) < 64:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(release_w)
                n = 0
                try:
                    while held + n < cap:
                        os.open("/dev/null", os.O_RDONLY)
                        n += 1
                except OSError as e:
                    os.write(w, b"%d %d" % (n, e.errno))
                else:
                    os.write(w, b"%d 0" % n)
                os.read(release_r, 1)
                os._exit(0)
            os.close(w)
            kids.append(pid)
            data = os.read(r, 64).split()
            os.close(r)
            if len(data) < 2:
                err = "child died"
                break
            n, e = int(data[0]), int(data[1])
            held += n
            if e not in (0, errno.EMFILE):
                err = ename(e)
                break
    finally:
        os.close(release_w)
        for pid in kids:
            os.waitpid(pid, 0)
        os.close(release_r)
    if err == "ENFILE":
        return "exhausted the host's file table (%d files held)" % held
    if held >= cap:
        return "held %d open files in %d processes: no per-instance bound" % (held, len(kids))


@attempt("disk_fill_bounded")
def _():
    vol = CFG["volume_bytes"]
    st = os.statvfs("/var/tmp")
    size = st.f_blocks * st.f_frsize
    if size > vol + (1 << 30):
        return "the root filesystem is %d GiB (the host's), not the %d GiB volume" % (size >> 30, vol >> 30)
    path = "/var/tmp/ec2lab-fill-" + NONCE
    written, bound = 0, vol + (64 << 20)
    block = b"\xa5" * (4 << 20)
    try:
        with open(path, "wb", buffering=0) as f:
            while written < bound:
                try:
                    written += f.write(block)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        return None
                    raise
        return "wrote %d MiB on a %d MiB volume" % (written >> 20, vol >> 20)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


@attempt("inotify_own_budget")
def _():
    # The host holds every inotify instance of its uid 1000; the instance's uid 1000 must have
    # its own budget.
    def child():
        os.setgid(1000)
        os.setuid(1000)
        fd = libc.inotify_init1(0o2000000)
        if fd < 0:
            return "uid 1000 has no inotify instances left (%s): shares the host uid's" % ename(ctypes.get_errno())
        os.close(fd)
    return in_child(child)


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


main()
