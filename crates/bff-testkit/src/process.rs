//! Child processes in tests (the `bff` binary, a generated project, Chromium, a validator), with every
//! wait bounded: a process that never prints the line a test waits for, never exits after SIGTERM or
//! never finishes fails its test with what it printed so far, instead of hanging the test run. A
//! [`Proc`] is killed with every process it started when it is dropped: a failing test leaves nothing
//! running, not even `cargo test`'s test binaries or a browser's helpers. (It stays in the test's
//! process group, so a Ctrl-C still reaches it.)
//!
//! ```no_run
//! use bff_testkit::process::Proc;
//! use std::process::{Command, Stdio};
//! let mut bff = Proc::spawn(Command::new("bff").args(["run"]).stdout(Stdio::piped()));
//! let (url, admin) = bff.listening();
//! bff.sigterm();
//! assert!(bff.wait_within().success());
//! ```

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{self, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

/// How long a [`Proc`] may take to print the line waited for, or to exit after SIGTERM.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A child process, killed with its descendants (and reaped) when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// Starts `cmd`; panics naming the program when it cannot start.
    pub fn spawn(cmd: &mut Command) -> Self {
        match cmd.spawn() {
            Ok(child) => Self(child),
            Err(e) => panic!("{:?} did not start: {e}", cmd.get_program()),
        }
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Its stdout (which must be piped) as lines, read on a thread of their own until it ends.
    pub fn stdout_lines(&mut self) -> Lines {
        let stdout = self
            .0
            .stdout
            .take()
            .expect("stdout piped, and not taken yet");
        Lines::read(stdout, "stdout")
    }

    /// Reads its stdout until a line for which `done` is true, within [`DEADLINE`]; returns every line
    /// read, that one last. The rest of its stdout is read and dropped in the background, so that it
    /// never blocks on a full pipe.
    pub fn stdout_until(&mut self, done: impl FnMut(&str) -> bool) -> Vec<String> {
        self.stdout_lines().until(done)
    }

    /// [`Proc::stdout_until`] for its stderr.
    pub fn stderr_until(&mut self, done: impl FnMut(&str) -> bool) -> Vec<String> {
        let stderr = self
            .0
            .stderr
            .take()
            .expect("stderr piped, and not taken yet");
        Lines::read(stderr, "stderr").until(done)
    }

    /// The public and admin URLs of the `bff` binary (or a project's), from the `listening on URL
    /// (admin URL)` line it prints on its stdout when it serves.
    pub fn listening(&mut self) -> (String, String) {
        let lines = self.stdout_until(|l| l.contains("listening on"));
        listening(lines.last().expect("a line"))
    }

    /// Sends it SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill (procps)");
        assert!(ok.success(), "kill -TERM {}", self.0.id());
    }

    /// Its exit status, once it exits within [`DEADLINE`]; killed, and the test failed, when it does not.
    pub fn wait_within(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    self.kill();
                    panic!("process {} did not exit within {DEADLINE:?}", self.0.id());
                }
                Err(e) => panic!("waiting for process {}: {e}", self.0.id()),
            }
        }
    }
}

impl Proc {
    /// Kills it and every process it started that still descends from it (SIGKILL), then reaps it.
    /// Once it has been reaped, what it started belongs to another parent and is left alone.
    fn kill(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // Not reaped: its id, and those of its descendants, are theirs while it lives.
            let mut pids = vec![self.0.id()];
            descendants(self.0.id(), &mut pids);
            if pids.len() > 1 {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .args(pids[1..].iter().map(u32::to_string))
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Adds the descendants of `pid` to `out`, from `/proc/PID/task/TID/children` (Linux).
fn descendants(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            if !out.contains(&child) {
                out.push(child);
                descendants(child, out);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The public and admin URLs of a `listening on URL (admin URL)` line.
pub fn listening(line: &str) -> (String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [.., "listening", "on", url, "(admin", admin] => {
            (url.to_string(), admin.trim_end_matches(')').to_string())
        }
        _ => panic!("not a listening line: {line:?}"),
    }
}

/// The lines of a process's output, read on a thread of their own: once these are dropped, the rest is
/// read and dropped, so that the process never blocks on a full pipe.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    name: &'static str,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static, name: &'static str) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut forward = true;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                forward = forward && tx.send(line).is_ok();
            }
        });
        Self { rx, name }
    }

    /// The next line, within [`DEADLINE`].
    pub fn next_line(&self) -> String {
        self.until(|_| true).pop().expect("a line")
    }

    /// The lines up to the first for which `done` is true, that one last, within [`DEADLINE`].
    pub fn until(&self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let name = self.name;
        let deadline = Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let last = done(&line);
                    lines.push(line);
                    if last {
                        return lines;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the line waited for was not on {name} within {DEADLINE:?}: {lines:#?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{name} ended before the line waited for: {lines:#?}")
                }
            }
        }
    }

    /// Every line left, up to the end of the stream: for a process that has exited.
    pub fn rest(self) -> Vec<String> {
        self.rx.iter().collect()
    }
}

/// Runs `cmd` to its end with stdout and stderr captured (stdin empty), as `Command::output` does, but
/// for at most `limit`: past it the process is killed and the test fails with what it printed. Output
/// still held open by a process it started (a browser's helpers) is waited for 5 s after it exits.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let program = cmd.get_program().to_owned();
    let mut child = Proc::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (closed, all_closed) = mpsc::channel::<()>();
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (into, closed) = (buf.clone(), closed.clone());
        std::thread::spawn(move || {
            if let Some(mut s) = stream {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    into.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]);
                }
            }
            let _ = closed.send(());
        });
        buf
    };
    let stdout = drain(child.0.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.0.stderr.take().map(|s| Box::new(s) as _));
    drop(closed);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                child.kill();
                break None;
            }
        }
    };
    let grace = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        if all_closed
            .recv_timeout(grace.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let take = |buf: Arc<Mutex<Vec<u8>>>| {
        std::mem::take(&mut *buf.lock().unwrap_or_else(PoisonError::into_inner))
    };
    let (stdout, stderr) = (take(stdout), take(stderr));
    let Some(status) = status else {
        panic!(
            "{program:?} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// [`output_within`] as a method of `Command`.
pub trait OutputWithin {
    /// Runs it to its end within `limit` (see [`output_within`]).
    fn output_within(&mut self, limit: Duration) -> Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        output_within(self, limit)
    }
}

/// Whether `program` (a path, or a name looked up on `PATH`) is there to run.
pub fn found(program: &std::ffi::OsStr) -> bool {
    let on_path = |dir: std::path::PathBuf| dir.join(program).is_file();
    std::path::Path::new(program).is_file()
        || std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(on_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether process `pid` runs (exists and is not a zombie).
    fn runs(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn dropping_a_proc_kills_what_it_started_too() {
        let mut sh = Proc::spawn(
            Command::new("sh")
                .args(["-c", "sleep 600 & echo $!; wait"])
                .stdout(Stdio::piped()),
        );
        let sleep: u32 = sh.stdout_lines().next_line().trim().parse().unwrap();
        assert!(runs(sleep));
        drop(sh);
        let deadline = Instant::now() + DEADLINE;
        while runs(sleep) {
            assert!(
                Instant::now() < deadline,
                "sleep {sleep}, started by the dropped Proc, still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
