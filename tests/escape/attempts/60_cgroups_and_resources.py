# Escape attempts, one group (see ../attempts.py: the framework these run in).

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
    if mounts_fresh(b"cgroup2"):
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
