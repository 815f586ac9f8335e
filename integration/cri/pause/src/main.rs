//! A pod sandbox's process ("pause"), built static into the test's sandbox image: it holds the
//! pod's namespaces, reaps what is orphaned into it when it is PID 1 of a shared PID namespace,
//! and exits 0 on SIGTERM or SIGINT, as the kubelet's pause does.

fn main() {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; the signal numbers are valid; blocking them before
    // sigwait is what makes sigwait receive them; this program has one thread.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    loop {
        let mut sig = 0;
        // SAFETY: `set` and `sig` are live for the call.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        match sig {
            libc::SIGCHLD => {
                // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
                while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            }
            _ => std::process::exit(0),
        }
    }
}
