"""The RuntimeDefault seccomp profile: an allow-list like moby's default.json.

Everything not listed fails with EPERM (``SCMP_ACT_ERRNO``, errno 1). Rules
are conditional the way moby's are: on the architecture (``arches``, in Go's
GOARCH names) and on the container's capabilities (``caps``), so that a
container granted CAP_SYS_ADMIN may also call mount(2) and friends; this
module is data only, :mod:`pycrio.container.seccomp` renders it for a given
architecture and capability set into an OCI ``linux.seccomp`` object.
"""

from __future__ import annotations

from typing import Any

DEFAULT_ACTION = "SCMP_ACT_ERRNO"
DEFAULT_ERRNO_RET = 1  # EPERM

#: uname -m -> (GOARCH name used in rule conditions, seccomp architectures).
#: The native architecture comes first; the others are the compat ABIs a
#: binary of that machine may use (32-bit x86 and x32 on x86_64, arm on aarch64).
ARCHITECTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x86_64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "amd64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "arm64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
}

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()

#: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone(2) without
#: CAP_SYS_ADMIN may create threads and processes but no namespaces.
CLONE_NAMESPACE_FLAGS = 0x7E020000
AF_VSOCK = 40
ENOSYS = 38


def _allow(names: str, **conditions: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": names.split(), "action": "SCMP_ACT_ALLOW"}
    rule.update(conditions)
    return rule


#: The rules, in moby's shape: ``includes``/``excludes`` hold ``arches``
#: (GOARCH) and ``caps`` conditions; ``args`` are OCI seccomp argument filters.
RULES: tuple[dict[str, Any], ...] = (
    {"names": list(_ALLOWED), "action": "SCMP_ACT_ALLOW"},
    # moby allows these from kernel 4.8 on (where ptrace can no longer bypass
    # seccomp); pycrio needs a newer kernel anyway.
    _allow("process_vm_readv process_vm_writev ptrace"),
    _allow("socket", args=[{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]),
    # personality(2) only for the harmless personas: PER_LINUX, PER_LINUX32,
    # UNAME26, UNAME26|PER_LINUX32 and the 0xffffffff query.
    *(
        _allow("personality", args=[{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}])
        for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
    ),
    _allow(
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
        includes={"arches": ["arm", "arm64"]},
    ),
    _allow("arch_prctl", includes={"arches": ["amd64", "x32"]}),
    _allow("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
    _allow("open_by_handle_at", includes={"caps": ["CAP_DAC_READ_SEARCH"]}),
    _allow(
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
        "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd "
        "setdomainname sethostname setns syslog umount umount2 unshare",
        includes={"caps": ["CAP_SYS_ADMIN"]},
    ),
    _allow(
        "clone",
        args=[
            {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
        ],
        excludes={"caps": ["CAP_SYS_ADMIN"]},
    ),
    # clone3 passes its flags in memory where seccomp cannot look: make libc
    # fall back to clone(2), which the rule above does check.
    {
        "names": ["clone3"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": ENOSYS,
        "excludes": {"caps": ["CAP_SYS_ADMIN"]},
    },
    _allow("reboot", includes={"caps": ["CAP_SYS_BOOT"]}),
    _allow("chroot", includes={"caps": ["CAP_SYS_CHROOT"]}),
    _allow("delete_module init_module finit_module", includes={"caps": ["CAP_SYS_MODULE"]}),
    _allow("acct", includes={"caps": ["CAP_SYS_PACCT"]}),
    _allow(
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
        includes={"caps": ["CAP_SYS_PTRACE"]},
    ),
    _allow("iopl ioperm", includes={"caps": ["CAP_SYS_RAWIO"]}),
    _allow("settimeofday stime clock_settime clock_settime64", includes={"caps": ["CAP_SYS_TIME"]}),
    _allow("vhangup", includes={"caps": ["CAP_SYS_TTY_CONFIG"]}),
    _allow(
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
        includes={"caps": ["CAP_SYS_NICE"]},
    ),
    _allow("syslog", includes={"caps": ["CAP_SYSLOG"]}),
    _allow("bpf", includes={"caps": ["CAP_BPF"]}),
    _allow("perf_event_open", includes={"caps": ["CAP_PERFMON"]}),
)
