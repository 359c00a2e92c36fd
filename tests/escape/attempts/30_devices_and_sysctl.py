# Escape attempts, one group (see ../attempts.py: the framework these run in).

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
    if mounts_fresh(b"binfmt_misc"):
        return "mounted binfmt_misc"
    p = "/proc/sys/fs/binfmt_misc/register"
    if os.path.exists(p):
        try:
            with open(p, "w") as f:
                f.write(":x:")  # invalid on purpose
        except OSError as e:
            if e.errno not in REFUSED:
                return "binfmt_misc register reached the kernel (%s)" % ename(e.errno)
