//! The seccomp filter on every instance process, modelled on Docker's default profile.
//!
//! What is refused (with `EPERM`, so programs see an ordinary "operation not permitted"):
//! the kernel keyrings (`add_key`, `request_key`, `keyctl`), loading code into the kernel
//! (`init_module` and friends, `kexec_*`, `bpf`), observing the host (`perf_event_open`,
//! `lookup_dcookie`, `kcmp`, `process_vm_*`), file handles that bypass the mount tree
//! (`open_by_handle_at`, `name_to_handle_at`), `userfaultfd`, `io_uring_*`, every mount call
//! (old and new mount API, `pivot_root`, `umount2`), `setns`, new namespaces (`unshare` and
//! `clone` with any `CLONE_NEW*` flag), swap, quotas, `reboot`, the clock, `iopl`/`ioperm`,
//! `acct`. `clone3` answers `ENOSYS` (its flags live in memory a filter cannot read; libc then
//! falls back to `clone`, whose flags are checked), and so do x32 system calls. A process of
//! another architecture is killed.
//!
//! Why a hand-built program and not a filter crate: the filter must be installed *without*
//! `no_new_privs` (sudo and other setuid programs must keep working inside), must range-check
//! the x32 bit, and will gain `SECCOMP_RET_USER_NOTIF` entries for intercepted calls (the EBS
//! issue mounts volumes that way): [`Policy::intercept`] is that extension point — an
//! intercepted call is allowed by this filter and answered by a second, notifying one. The
//! program is small, straight-line and unit-tested by running it.
//!
//! Order: [`install`] is called by PID 1 after `pivot_root` and by `__enter`'s child before it
//! drops capabilities (installing without `no_new_privs` needs `CAP_SYS_ADMIN`); every
//! descendant inherits the filter.

use std::io;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// x86_64: system call numbers with this bit are the x32 ABI.
#[cfg(target_arch = "x86_64")]
const X32_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_BIT: Option<u32> = None;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

/// Every `CLONE_NEW*` flag (all in the low 32 bits of the flags argument).
const NEW_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP
    | 0x80) as u32; // CLONE_NEWTIME

/// System calls refused outright (EPERM).
const DENIED: &[libc::c_long] = &[
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_lookup_dcookie,
    libc::SYS_kcmp,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_acct,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
];

/// What the filter does; [`Policy::instance`] is the one every instance gets.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Refused with EPERM.
    pub deny: Vec<libc::c_long>,
    /// Allowed by this filter, to be answered by a user-notification handler (none yet).
    pub intercept: Vec<libc::c_long>,
}

impl Policy {
    pub fn instance() -> Policy {
        Policy {
            deny: DENIED.to_vec(),
            intercept: Vec::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

enum Insn {
    Load(u32),
    /// `if A op k goto jt else jf`
    Jump(u16, u32, Target, Target),
    Ret(u32),
    Label(usize),
}

const L_EPERM: usize = 0;
const L_ENOSYS: usize = 1;
const L_KILL: usize = 2;
const L_NS_FLAGS: usize = 3;

/// Builds the classic-BPF program for `policy`.
fn program(policy: &Policy) -> Vec<libc::sock_filter> {
    use Target::{Label, Next};
    let mut p = vec![
        Insn::Load(OFF_ARCH),
        Insn::Jump(BPF_JEQ_K, AUDIT_ARCH, Next, Label(L_KILL)),
        Insn::Load(OFF_NR),
    ];
    if let Some(bit) = X32_BIT {
        p.push(Insn::Jump(BPF_JGE_K, bit, Label(L_ENOSYS), Next));
    }
    for &nr in policy
        .deny
        .iter()
        .filter(|nr| !policy.intercept.contains(nr))
    {
        p.push(Insn::Jump(BPF_JEQ_K, nr as u32, Label(L_EPERM), Next));
    }
    p.push(Insn::Jump(
        BPF_JEQ_K,
        libc::SYS_clone3 as u32,
        Label(L_ENOSYS),
        Next,
    ));
    for nr in [libc::SYS_clone, libc::SYS_unshare] {
        p.push(Insn::Jump(BPF_JEQ_K, nr as u32, Label(L_NS_FLAGS), Next));
    }
    p.push(Insn::Ret(RET_ALLOW));
    p.extend([
        Insn::Label(L_NS_FLAGS),
        Insn::Load(OFF_ARG0_LO),
        Insn::Jump(BPF_JSET_K, NEW_NAMESPACE_FLAGS, Label(L_EPERM), Next),
        Insn::Ret(RET_ALLOW),
        Insn::Label(L_EPERM),
        Insn::Ret(RET_ERRNO | libc::EPERM as u32),
        Insn::Label(L_ENOSYS),
        Insn::Ret(RET_ERRNO | libc::ENOSYS as u32),
        Insn::Label(L_KILL),
        Insn::Ret(RET_KILL_PROCESS),
    ]);
    assemble(&p)
}

/// Resolves labels into relative jump offsets (labels take no room).
fn assemble(p: &[Insn]) -> Vec<libc::sock_filter> {
    let mut at = Vec::new();
    let mut pos = 0usize;
    for i in p {
        match i {
            Insn::Label(l) => {
                if at.len() <= *l {
                    at.resize(l + 1, 0);
                }
                at[*l] = pos;
            }
            _ => pos += 1,
        }
    }
    let mut out = Vec::with_capacity(pos);
    for i in p {
        let here = out.len();
        let off = |t: Target| -> u8 {
            match t {
                Target::Next => 0,
                Target::Label(l) => u8::try_from(at[l] - here - 1).expect("jump within 255"),
            }
        };
        let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        match *i {
            Insn::Load(off) => out.push(ins(BPF_LD_W_ABS, 0, 0, off)),
            Insn::Jump(code, k, jt, jf) => out.push(ins(code, off(jt), off(jf), k)),
            Insn::Ret(v) => out.push(ins(BPF_RET_K, 0, 0, v)),
            Insn::Label(_) => {}
        }
    }
    out
}

/// Installs the filter on the calling (single-threaded) process. Without `no_new_privs` this
/// needs `CAP_SYS_ADMIN`: call it before capabilities are dropped.
pub fn install(policy: &Policy) -> io::Result<()> {
    let prog = program(policy);
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).expect("filter fits"),
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `fprog` and the `prog` it points to, both
    // alive for the duration of the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a forked child with the filter installed; returns the child's exit code.
    fn in_filtered_child(f: fn() -> i32) -> i32 {
        // SAFETY: fork in a test; the child only makes raw system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: prctl with constant arguments; no_new_privs lets a non-root test install.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = match install(&Policy::instance()) {
                Ok(()) => f(),
                Err(_) => 99,
            };
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        libc::WEXITSTATUS(st)
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r == -1 {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    #[test]
    fn refuses_what_it_should_and_nothing_else() {
        // Each check returns 0 when the outcome is right, a distinct code otherwise.
        assert_eq!(
            in_filtered_child(|| {
                // SAFETY: raw system calls with harmless arguments; refused ones do nothing.
                unsafe {
                    let keyctl = libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0);
                    if errno_of(keyctl) != libc::EPERM {
                        return 1;
                    }
                    let userns = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
                    if errno_of(userns) != libc::EPERM {
                        return 2;
                    }
                    if errno_of(libc::syscall(libc::SYS_clone3, 0, 0)) != libc::ENOSYS {
                        return 3;
                    }
                    let mnt = libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0);
                    if errno_of(mnt) != libc::EPERM {
                        return 4;
                    }
                    // Allowed: plain calls, unshare without namespace flags, fork via clone.
                    if libc::syscall(libc::SYS_getpid) <= 0 {
                        return 5;
                    }
                    if libc::syscall(libc::SYS_unshare, libc::CLONE_FS) != 0 {
                        return 6;
                    }
                    let child = libc::fork();
                    if child == 0 {
                        libc::_exit(0);
                    }
                    if child < 0 {
                        return 7;
                    }
                    let mut st = 0;
                    libc::waitpid(child, &mut st, 0);
                }
                0
            }),
            0
        );
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let p = program(&Policy::instance());
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "insn {i}");
            }
        }
        assert_eq!(p.last().unwrap().k, RET_KILL_PROCESS);
    }
}
