//! `switchboard send-file` and `switchboard receive-file`: a file as a stream from one agent
//! to another, with a progress bar on stderr and a JSON summary line on stdout.

use super::{ChannelArgs, ConnectArgs, join_as, print_json_line};
use anyhow::Context;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard_client::stream::{self, Incoming};
use switchboard_client::{ChannelEvent, JoinParams, StreamOpen};

/// Arguments of `switchboard send-file`.
#[derive(Debug, Args)]
pub struct SendFileArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
    /// Agent name to send as.
    #[arg(long)]
    agent: String,
    /// The recipient.
    #[arg(long)]
    to: String,
    /// Resume this stream (printed by an earlier, interrupted send-file).
    #[arg(long, value_name = "STREAM_ID")]
    resume: Option<String>,
    /// Return once the server has the whole file, without waiting for the recipient.
    #[arg(long)]
    no_wait: bool,
    /// The file.
    path: PathBuf,
}

/// Arguments of `switchboard receive-file`.
#[derive(Debug, Args)]
pub struct ReceiveFileArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
    /// Agent name to receive as.
    #[arg(long)]
    agent: String,
    /// Only a stream from this agent.
    #[arg(long)]
    from: Option<String>,
    /// Where to write the file. If it exists, the stream resumes after its bytes (an
    /// interrupted receive-file of the same stream).
    #[arg(long)]
    output: PathBuf,
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per quarter otherwise.
struct Progress {
    label: &'static str,
    total: Option<u64>,
    /// The first update (bytes, when): the rate counts from there, since a bar may start
    /// part-way (a resume, or the delivery that began while sending).
    first: Option<(u64, Instant)>,
    drawn: Instant,
    quarter: u64,
    tty: bool,
}

impl Progress {
    fn new(label: &'static str, total: Option<u64>) -> Self {
        Progress {
            label,
            total,
            first: None,
            drawn: Instant::now() - Duration::from_secs(1),
            quarter: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64) {
        let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
        let (from, since) = *self.first.get_or_insert((done, Instant::now()));
        // A rate over less than half a second (or over events that queued up) says nothing.
        let secs = since.elapsed().as_secs_f64();
        let rate = if secs >= 0.5 {
            format!(" {:.1} MiB/s", mib(done.saturating_sub(from)) / secs)
        } else {
            String::new()
        };
        let line = match self.total.filter(|t| *t > 0) {
            Some(total) => {
                let pct = done.min(total) * 100 / total;
                let width = 30;
                let filled = (pct as usize * width) / 100;
                format!(
                    "{} [{}{}] {pct:3}% {:.1}/{:.1} MiB{rate}",
                    self.label,
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    mib(done),
                    mib(total)
                )
            }
            None => format!("{} {:.1} MiB{rate}", self.label, mib(done)),
        };
        let mut err = std::io::stderr();
        if self.tty {
            if self.drawn.elapsed() >= Duration::from_millis(100) || Some(done) == self.total {
                let _ = write!(err, "\r{line}");
                let _ = err.flush();
                self.drawn = Instant::now();
            }
        } else if let Some(total) = self.total.filter(|t| *t > 0) {
            let quarter = done * 4 / total;
            if quarter > self.quarter {
                self.quarter = quarter;
                let _ = writeln!(err, "{line}");
            }
        }
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Fails when `event` ends stream `id` (an error, a cancel) or the channel; other events pass.
fn ended(event: Option<ChannelEvent>, id: &str) -> anyhow::Result<()> {
    match event {
        Some(ChannelEvent::StreamError(e)) if e.stream_id == id => {
            anyhow::bail!("{}: {}", e.code, e.message)
        }
        Some(ChannelEvent::StreamCancelled(c)) if c.stream_id == id => anyhow::bail!(
            "{} cancelled the stream: {}",
            c.by,
            c.reason.unwrap_or_default()
        ),
        Some(_) => Ok(()),
        None => anyhow::bail!("the channel closed"),
    }
}

/// Runs `switchboard send-file`.
pub async fn send(args: SendFileArgs) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(&args.path)
        .await
        .with_context(|| format!("cannot open {}", args.path.display()))?;
    let size = file.metadata().await?.len();
    let client = args.connect.connect().await?;
    let mut params = JoinParams::new(&args.agent);
    params.password = args.target.password.clone();
    params.scope = args.target.scope.into();
    params.presence = false;
    let mut channel = join_as(&client, &args.target.channel, params).await?;
    let sender = channel.sender();
    let mut bar = Progress::new("sending ", Some(size));
    let reader = tokio::io::BufReader::with_capacity(1 << 20, file);
    let id = match &args.resume {
        Some(id) => id.clone(),
        None => {
            let open = StreamOpen {
                to: args.to.clone(),
                name: args
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                size: Some(size),
                ..StreamOpen::default()
            };
            sender.stream_open(&open).await?.stream_id
        }
    };
    eprintln!("stream {id} (if interrupted: send-file --resume {id})");
    let sent = stream::resume(&sender, &id, reader, |n| bar.update(n))
        .await
        .with_context(|| format!("sending stream {id} failed; run again with --resume {id}"))?;
    bar.finish();
    if !args.no_wait {
        let mut delivered = Progress::new("delivered", Some(sent.total_size));
        loop {
            let event = tokio::select! {
                event = channel.recv() => event,
                _ = tokio::signal::ctrl_c() => anyhow::bail!(
                    "interrupted; the stream {} waits on the server for {}", sent.stream_id, args.to
                ),
            };
            match event {
                Some(ChannelEvent::StreamProgress(p)) if p.stream_id == sent.stream_id => {
                    delivered.update(p.offset);
                }
                Some(ChannelEvent::StreamComplete(c)) if c.stream_id == sent.stream_id => {
                    delivered.update(c.total_size);
                    break;
                }
                other => ended(other, &sent.stream_id)?,
            }
        }
        delivered.finish();
    }
    print_json_line(&serde_json::json!({
        "stream_id": sent.stream_id,
        "total_size": sent.total_size,
        "checksum": sent.checksum,
    }))?;
    let _ = channel.leave().await;
    client.close().await;
    Ok(())
}

/// Runs `switchboard receive-file`.
pub async fn receive(args: ReceiveFileArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let mut params = JoinParams::new(&args.agent);
    params.password = args.target.password.clone();
    params.scope = args.target.scope.into();
    params.presence = false;
    let mut channel = join_as(&client, &args.target.channel, params).await?;
    let sender = channel.sender();
    let offer = loop {
        let event = tokio::select! {
            event = channel.recv() => event,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted before a stream arrived"),
        };
        match event {
            Some(ChannelEvent::StreamOffer(offer))
                if args.from.as_ref().is_none_or(|f| *f == offer.from) =>
            {
                break offer;
            }
            Some(ChannelEvent::Kicked(reply)) => {
                return Err(anyhow::Error::new(switchboard_client::Error::Server(reply)));
            }
            Some(_) => {}
            None => anyhow::bail!("the channel closed"),
        }
    };
    let existing = tokio::fs::metadata(&args.output)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut incoming = if existing > 0 {
        let prefix = tokio::fs::File::open(&args.output).await?;
        let writer = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&args.output)
            .await?;
        eprintln!(
            "resuming after the {existing} bytes in {}",
            args.output.display()
        );
        Incoming::resume(&sender, &offer, tokio::io::BufReader::new(prefix), writer).await?
    } else {
        let writer = tokio::fs::File::create(&args.output)
            .await
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        Incoming::accept(&sender, &offer, writer).await?
    };
    let mut bar = Progress::new("receiving", offer.size);
    let end = loop {
        let event = tokio::select! {
            event = channel.recv() => event,
            _ = tokio::signal::ctrl_c() => anyhow::bail!(
                "interrupted at {} bytes; run again with the same --output to resume",
                incoming.received()
            ),
        };
        match event {
            Some(ChannelEvent::StreamData {
                stream_id,
                offset,
                bytes,
            }) if stream_id == offer.stream_id => {
                incoming.data(&sender, offset, &bytes).await?;
                bar.update(incoming.received());
            }
            Some(ChannelEvent::StreamEnd(end)) if end.stream_id == offer.stream_id => break end,
            other => ended(other, &offer.stream_id)?,
        }
    };
    incoming.finish(&sender, &end).await?;
    bar.update(end.total_size);
    bar.finish();
    print_json_line(&serde_json::json!({
        "stream_id": offer.stream_id,
        "from": offer.from,
        "name": offer.name,
        "total_size": end.total_size,
        "checksum": end.checksum,
        "output": args.output,
    }))?;
    let _ = channel.leave().await;
    client.close().await;
    Ok(())
}
