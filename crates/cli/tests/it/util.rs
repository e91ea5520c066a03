//! Running the real `bramble` binary: one-shot commands ([`bramble`], [`Run`]) and
//! background processes that are killed when the test ends, even on failure ([`Background`]).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for a background process to get somewhere.
pub const WAIT: Duration = Duration::from_secs(20);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bramble");

/// A `bramble` command run in `cwd`, with none of the caller's `BRAMBLE_*` settings (the
/// configuration layering reads `BRAMBLE_SERVER__…`, the admin client `BRAMBLE_ADMIN_URL`),
/// logs without colour.
pub fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("BRAMBLE_") || k == "RUST_LOG" {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("NO_COLOR", "1").env("RUST_BACKTRACE", "0");
    cmd
}

/// Runs `bramble ARGS…` in `cwd` to completion.
pub fn bramble<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = command(cwd);
    cmd.args(args);
    Run::of(cmd)
}

/// A finished command: what it printed and how it ended.
pub struct Run {
    pub line: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion (at most [`WAIT`]; a hung command is killed and fails the test).
    pub fn of(mut cmd: Command) -> Run {
        let line = format!(
            "bramble {}",
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(WAIT) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("waiting for {line}: {e}"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("{line} did not finish within {WAIT:?}");
            }
        };
        Run {
            line,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Run {
        assert!(self.status.success(), "expected success\n{self}");
        self
    }

    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.status.code(),
            Some(want),
            "unexpected exit code\n{self}"
        );
        self
    }

    /// Asserts that stdout contains every needle, in this order.
    #[track_caller]
    pub fn stdout_has_in_order(self, needles: &[&str]) -> Run {
        let mut rest = self.stdout.as_str();
        for n in needles {
            match rest.find(n) {
                Some(i) => rest = &rest[i + n.len()..],
                None => panic!("stdout lacks {n:?} (after the earlier needles)\n{self}"),
            }
        }
        self
    }

    /// Asserts that stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    /// Asserts that the program did not panic (a panic is a bug whatever the exit code).
    #[track_caller]
    pub fn no_panic(self) -> Run {
        assert!(
            !self.stderr.contains("panicked"),
            "the program panicked\n{self}"
        );
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.line)?;
        writeln!(f, "status:  {}", self.status)?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        write!(f, "--- stderr\n{}", self.stderr)
    }
}

/// A `bramble` process in the background, its output going to files. Dropping it kills it
/// (and, if the test is failing, prints what it wrote).
pub struct Background {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    /// Starts `bramble ARGS…` in `cwd`; its output goes to `cwd/NAME.stdout|stderr`.
    pub fn start<I, S>(name: &str, cwd: &Path, args: I) -> Background
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout = cwd.join(format!("{name}.stdout"));
        let stderr = cwd.join(format!("{name}.stderr"));
        let file = |p: &Path| {
            std::fs::File::create(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()))
        };
        let mut cmd = command(cwd);
        cmd.args(args).stdout(file(&stdout)).stderr(file(&stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Background {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit (after it was killed) and forgets it.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// What it printed so far on stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed so far on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Panics (with the output) if the process has ended.
    #[track_caller]
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the process was not reaped yet");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited early ({status})\n{}", self.name, self.output());
        }
    }

    /// Polls `check` until it gives a value, for at most [`WAIT`], failing early (with the
    /// output) if the process ends.
    #[track_caller]
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Background) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            self.assert_running();
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: gave up waiting for {what} after {WAIT:?}\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; returns its status.
    #[track_caller]
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the process was not reaped yet");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the process") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {within:?} of SIGTERM\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// Polls `check` until it gives a value, for at most [`WAIT`].
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bramble-cli-it-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Whether `s` is a SHA-256 fingerprint as Bramble prints it: 32 pairs of hex digits
/// separated by colons.
pub fn is_fingerprint(s: &str) -> bool {
    let pairs: Vec<&str> = s.split(':').collect();
    pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The value after `label` on the line of `text` that starts with it (after indentation).
pub fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

/// A path as an argument (temporary directories have UTF-8 names).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
