//! Child processes that must not outlive the process that started them.

use std::process::Command;

/// Linux: asks the kernel to SIGKILL the child when the thread that spawns
/// it exits, so that a parent killed before its `Drop` ran (SIGKILL, abort)
/// leaves no orphan. The thread, not the process: spawn from a thread that
/// lives as long as the child should (the main thread, a current-thread
/// runtime), not from a runtime worker that may exit first. Elsewhere a no-op.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe, and nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_child_dies_with_its_spawning_thread() {
        let pid = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            cmd.spawn().map(|c| c.id())
        })
        .join()
        .unwrap()
        .unwrap();
        // The thread is gone: the kernel kills the child; it stays a zombie
        // (this process never reaps it), so look at its state, not its pid.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            if matches!(state, None | Some("Z" | "X")) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sleep {pid} outlived its thread: {stat}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Reap it, so the test leaves no zombie behind.
        let pid = libc::pid_t::try_from(pid).unwrap();
        // SAFETY: waitpid on a child of this process that was not reaped yet.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}
