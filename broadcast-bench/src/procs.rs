//! Child processes of the bench and their CPU time.
//!
//! Every child is killed when the bench exits, however it exits: normally
//! (stdin closed, then SIGKILL after a grace period), on error or panic
//! (`kill_on_drop`), and when the bench itself is killed (the kernel sends
//! the child SIGKILL through `PR_SET_PDEATHSIG`; the bench spawns from its
//! single runtime thread, which lives as long as the process).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use broadcast_test_support::process::die_with_parent;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{Result, bail};

/// Children spawned and not yet reaped.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records a child so that [`reap_all`] can stop it.
pub fn register(pid: u32) {
    live().push(pid);
}

/// Forgets a child that was reaped.
pub fn unregister(pid: u32) {
    live().retain(|p| *p != pid);
}

/// Kills and reaps every child still registered: the exit path after an
/// error or a signal, when the runtime that owned them is gone. Without the
/// wait they would stay zombies until init reaps them.
pub fn reap_all() {
    for pid in std::mem::take(&mut *live()) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            continue;
        };
        // SAFETY: plain syscalls on a pid this process spawned and has not
        // reaped yet (so it cannot have been reused).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// A program in front of a child (a profiler: valgrind's callgrind,
/// heaptrack), named by an environment variable: the child runs as
/// `PROGRAM <its command>`. A wrapper that `exec`s keeps the child's pid, so
/// its CPU and context switches are still read.
pub struct Wrapper(Option<std::ffi::OsString>);

impl Wrapper {
    /// The wrapper named by `var`, if it is set.
    pub fn from_env(var: &str) -> Self {
        Self(std::env::var_os(var))
    }

    /// Spawns `exe args..`, through the wrapper if there is one.
    pub fn spawn(&self, name: String, exe: &Path, args: &[String]) -> Result<Proc> {
        match &self.0 {
            Some(wrapper) => {
                let mut wrapped = Vec::with_capacity(args.len() + 1);
                wrapped.push(exe.display().to_string());
                wrapped.extend_from_slice(args);
                Proc::spawn(name, Path::new(wrapper), &wrapped)
            }
            None => Proc::spawn(name, exe, args),
        }
    }

    /// How long a child may take to stop: a profiler writes its output at
    /// exit, which takes a while.
    pub fn grace(&self, unwrapped: Duration) -> Duration {
        if self.0.is_some() {
            Duration::from_secs(60)
        } else {
            unwrapped
        }
    }
}

/// A child process with a line protocol on stdin/stdout.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    /// Spawns `program args..` with piped stdin/stdout and inherited stderr.
    pub fn spawn(name: String, program: &Path, args: &[String]) -> Result<Proc> {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut cmd = Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {name} ({}): {e}", program.display()))?;
        let Some(pid) = child.id() else {
            bail!("{name} exited at once");
        };
        register(pid);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("{name}: no stdio pipes");
        };
        Ok(Proc {
            name,
            pid,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// The next line starting with `tag`, within `timeout`; the rest of
    /// the line after the tag and a space.
    pub async fn expect(&mut self, tag: &str, timeout: Duration) -> Result<String> {
        let read = async {
            loop {
                match self.stdout.next_line().await? {
                    Some(line) => {
                        if let Some(rest) = line.strip_prefix(tag) {
                            return Ok::<_, crate::Error>(rest.trim_start().to_owned());
                        }
                        eprintln!("[{}] {line}", self.name);
                    }
                    None => return Err(format!("{} exited before `{tag}`", self.name).into()),
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => bail!("{} did not say `{tag}` within {timeout:?}", self.name),
        }
    }

    /// Sends one line to the child.
    pub async fn tell(&mut self, line: &str) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("{}: stdin already closed", self.name);
        };
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// CPU seconds used so far.
    pub fn cpu(&self) -> Result<f64> {
        process_cpu(self.pid)
    }

    /// Context switches so far.
    pub fn context_switches(&self) -> Result<u64> {
        context_switches(self.pid)
    }

    /// Closes stdin (the child's signal to exit), waits up to `grace`, then
    /// kills. Always reaps.
    pub async fn stop(mut self, grace: Duration) {
        drop(self.stdin.take());
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("[{}] exited with {status}", self.name),
            Ok(Err(e)) => eprintln!("[{}] wait failed: {e}", self.name),
            Err(_) => {
                eprintln!("[{}] did not exit within {grace:?}; killing", self.name);
                let _ = self.child.kill().await;
            }
        }
        unregister(self.pid);
    }
}

/// CPU seconds of process `pid` (all its threads): the sum of the
/// nanosecond run times in `/proc/<pid>/task/*/schedstat`, since `utime +
/// stime` only counts 10 ms ticks, a few percent of a sub-second run. Falls
/// back to the ticks of `/proc/<pid>/stat` without schedstat. Threads that
/// exit during a run are not counted; the children's threads (tokio workers,
/// the stdin reader) live as long as the process.
pub fn process_cpu(pid: u32) -> Result<f64> {
    match schedstat_seconds(pid) {
        Ok(s) => Ok(s),
        Err(_) => cpu_seconds(&format!("/proc/{pid}/stat")),
    }
}

fn schedstat_seconds(pid: u32) -> Result<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread that exited since the listing has nothing to add.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(first) = text.split_whitespace().next() else {
            bail!("{}: empty", path.display());
        };
        ns += first.parse::<u64>()?;
    }
    Ok(ns as f64 / 1e9)
}

/// Voluntary and involuntary context switches of all threads of `pid`: a
/// wake-up costs a few microseconds, so their count per delivery explains
/// differences in CPU time.
pub fn context_switches(pid: u32) -> Result<u64> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(text) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>()?;
            }
        }
    }
    Ok(n)
}

/// Busy CPU seconds of the whole machine so far (all CPUs, from the `cpu`
/// line of `/proc/stat`: everything but idle and iowait), to tell how much
/// else ran during a run.
pub fn machine_busy_seconds() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        bail!("/proc/stat: no cpu line");
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .map(|(_, x)| x)
        .sum();
    Ok(busy as f64 / clock_ticks())
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds (all threads).
pub fn cpu_seconds(stat_path: &str) -> Result<f64> {
    let text = std::fs::read_to_string(stat_path)?;
    // The command name (field 2) may contain spaces: fields are counted
    // from the closing parenthesis; utime and stime are fields 14 and 15.
    let Some(end) = text.rfind(')') else {
        bail!("{stat_path}: unexpected format");
    };
    let fields: Vec<&str> = text[end + 1..].split_whitespace().collect();
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("{stat_path}: too few fields");
    };
    let ticks = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu() {
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds("/proc/self/stat").unwrap() >= 0.0);
        assert!(process_cpu(std::process::id()).unwrap() > 0.0);
        std::thread::sleep(Duration::from_millis(1));
        assert!(context_switches(std::process::id()).unwrap() > 0);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }
}
