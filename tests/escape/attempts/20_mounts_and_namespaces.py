# Escape attempts, one group (see ../attempts.py: the framework these run in).

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


for _name, _fs in (("mount_tmpfs", b"tmpfs"), ("mount_proc_unmasked", b"proc"), ("mount_sysfs_rw", b"sysfs")):
    def _mk(fs):
        def mount_fresh():
            if mounts_fresh(fs):
                return "mounted a fresh %s on %s" % (fs.decode(), MNT)
        return mount_fresh
    attempt(_name)(_mk(_fs))


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
