# Escape attempts, one group (see ../attempts.py: the framework these run in).

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
