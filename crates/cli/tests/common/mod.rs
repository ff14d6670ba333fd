//! Helpers shared by the tests that run the real server binary.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `switchboard serve` on port 0 and returns it (killed when dropped) with its address.
pub fn spawn_server(dir: &std::path::Path) -> (Guard, String) {
    spawn_server_with(dir, &[])
}

/// [`spawn_server`] with extra environment variables (configuration overrides).
pub fn spawn_server_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("Switchboard listening on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Guard::new(child), addr)
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct Guard(Option<Child>);

impl Guard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Guard(Some(child))
    }

    /// Waits for the process to end and collects its output.
    pub fn output(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("guarded")
            .wait_with_output()
            .expect("the process runs")
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("guarded")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("guarded")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
