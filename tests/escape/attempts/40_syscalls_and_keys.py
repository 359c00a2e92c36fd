# Escape attempts, one group (see ../attempts.py: the framework these run in).

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
