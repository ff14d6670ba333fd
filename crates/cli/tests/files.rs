//! `send-file` and `receive-file` against the real server binary: a 100 MiB file arrives
//! intact through a server whose memory stays far below the file's size, and a receiver
//! killed half-way resumes into its partial output.

mod common;

use common::{Guard, spawn_server};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// Writes `mib` MiB of a deterministic, non-repeating-per-block pattern.
fn write_payload(path: &Path, mib: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; MIB];
    for b in 0..mib {
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = ((i * 31 + b * 7) % 251) as u8;
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let n = read_full(&mut a, &mut x);
        let m = read_full(&mut b, &mut y);
        if n != m || x[..n] != y[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// The peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

struct Env {
    url: String,
    key: String,
}

impl Env {
    /// Starts the server binary on `data`; returns it with what clients need.
    fn start(data: &Path) -> (Guard, Env) {
        let (server, addr) = spawn_server(data);
        let env = Env {
            url: format!("ws://{addr}"),
            key: std::fs::read_to_string(data.join("default.key"))
                .unwrap()
                .trim()
                .to_owned(),
        };
        (server, env)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .arg("--url")
            .arg(&self.url)
            .env("SWITCHBOARD_API_KEY", &self.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

#[test]
fn a_100_mib_file_streams_through_bounded_server_memory_and_a_receiver_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, env) = Env::start(&data);
    let input = dir.path().join("in.bin");
    write_payload(&input, 100);
    let output = dir.path().join("out.bin");
    let (inp, out) = (input.to_str().unwrap(), output.to_str().unwrap());
    let baseline = peak_rss(server.id());

    let at = ["--channel", "files"];
    let receiver = env
        .cmd(
            &[
                &["receive-file", "--agent", "bob"],
                &at[..],
                &["--output", out],
            ]
            .concat(),
        )
        .spawn()
        .map(Guard::new)
        .unwrap();
    let sender = env
        .cmd(
            &[
                &["send-file", "--agent", "alice", "--to", "bob"],
                &at[..],
                &[inp],
            ]
            .concat(),
        )
        .spawn()
        .map(Guard::new)
        .unwrap();

    // Kill the receiver once a fifth of the file arrived; a new one resumes after its bytes.
    let mut receiver = receiver;
    loop {
        let have = std::fs::metadata(&output).map_or(0, |m| m.len());
        if have >= 20 * MIB as u64 {
            break;
        }
        if receiver.try_wait().unwrap().is_some() {
            let out = receiver.output();
            panic!(
                "the receiver ended early: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    receiver.kill().unwrap();
    receiver.wait().unwrap();
    let resumed = env
        .cmd(
            &[
                &["receive-file", "--agent", "bob"],
                &at[..],
                &["--output", out],
            ]
            .concat(),
        )
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("resuming after the"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["total_size"], 100 * MIB);
    assert_eq!(summary["from"], "alice");
    assert_eq!(summary["name"], "in.bin");

    let sent = sender.output();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(sent["checksum"], summary["checksum"]);
    assert!(same_contents(&input, &output), "the file arrived intact");

    // The whole file went through the server; its memory grew by far less.
    let peak = peak_rss(server.id());
    eprintln!(
        "server peak RSS {} MiB (baseline {} MiB) for a 100 MiB stream",
        peak / MIB as u64,
        baseline / MIB as u64
    );
    assert!(
        peak < baseline + 32 * MIB as u64,
        "server peak RSS {} MiB (baseline {} MiB) for a 100 MiB stream",
        peak / MIB as u64,
        baseline / MIB as u64
    );
    // Nothing is left behind in the spool.
    let spool: Vec<_> = std::fs::read_dir(data.join("streams")).unwrap().collect();
    assert!(spool.is_empty(), "{spool:?}");
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_interrupted_send_file_resumes_with_the_stream_id_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, env) = Env::start(&data);
    let input = dir.path().join("in.bin");
    write_payload(&input, 64);
    let inp = input.to_str().unwrap();
    let at = ["--channel", "files"];
    let mut sender = env
        .cmd(
            &[
                &["send-file", "--agent", "alice", "--to", "bob"],
                &at[..],
                &[inp],
            ]
            .concat(),
        )
        .spawn()
        .map(Guard::new)
        .unwrap();
    // Freeze the server once part of the file is spooled, then kill the sender: an
    // interruption in the middle of the upload.
    let spool = data.join("streams");
    loop {
        let spooled: u64 = std::fs::read_dir(&spool)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if spooled >= 8 * MIB as u64 {
            break;
        }
        assert!(
            sender.try_wait().unwrap().is_none(),
            "the sender ended early"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(server.id(), "-STOP");
    sender.kill().unwrap();
    let out = sender.output();
    signal(server.id(), "-CONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("st_"))
        .unwrap_or_else(|| panic!("no stream id in {stderr}"))
        .to_owned();

    let output = dir.path().join("out.bin");
    let receiver = env
        .cmd(
            &[
                &["receive-file", "--agent", "bob"],
                &at[..],
                &["--output", output.to_str().unwrap()],
            ]
            .concat(),
        )
        .spawn()
        .map(Guard::new)
        .unwrap();
    let resumed = env
        .cmd(
            &[
                &[
                    "send-file",
                    "--agent",
                    "alice",
                    "--to",
                    "bob",
                    "--resume",
                    &id,
                ],
                &at[..],
                &[inp],
            ]
            .concat(),
        )
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let received = receiver.output();
    assert!(
        received.status.success(),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    assert!(same_contents(&input, &output), "the file arrived intact");
}
