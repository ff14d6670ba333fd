//! Streams of large payloads, built on [`ChannelSender`]'s stream pushes.
//!
//! [`send`] (and [`resume`]) read a payload and send it as pipelined chunks, hashing it as
//! they go, and close it with its SHA-256. [`Incoming`] receives one: it writes each
//! `stream_data` to a writer in order (dropping bytes it has already), acknowledges as it
//! goes (the recipient's checkpoint, and the server's flow-control window), and verifies the
//! checksum end to end before the final acknowledgement.

use crate::channel::ChannelSender;
use crate::error::{Error, Result};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use sha2::{Digest, Sha256};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::stream::{CHUNK_BYTES, StreamEnd, StreamOffer, StreamOpen};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a payload is described to its recipient.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// A name, e.g. a file name.
    pub name: Option<String>,
    /// The size, when known.
    pub size: Option<u64>,
    /// The media type.
    pub content_type: Option<String>,
    /// Anything else, as a JSON object.
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// A stream that was sent and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its id.
    pub stream_id: String,
    /// Its size.
    pub total_size: u64,
    /// Its hex SHA-256.
    pub checksum: String,
}

/// Chunks in flight at once while sending.
const IN_FLIGHT: usize = 8;

/// Sends everything `reader` yields to agent `to` as a new stream. `progress` gets the bytes
/// the server holds after each acknowledged chunk. A dropped connection is survived (chunks
/// are re-sent, and recognised by their `seq`); after a failure, [`resume`] continues.
pub async fn send<R: AsyncRead + Unpin>(
    sender: &ChannelSender,
    to: &str,
    reader: R,
    options: SendOptions,
    progress: impl FnMut(u64),
) -> Result<Sent> {
    let open = StreamOpen {
        to: to.to_owned(),
        stream_id: None,
        name: options.name,
        size: options.size,
        content_type: options.content_type,
        meta: options.meta,
    };
    let position = sender.stream_open(&open).await?;
    pump(
        sender,
        &position.stream_id,
        reader,
        Sha256::new(),
        0,
        0,
        progress,
    )
    .await
}

/// Resumes stream `stream_id`, which this agent opened: `reader` must yield the same payload
/// from its start; the part the server holds is read again only to rebuild the checksum.
pub async fn resume<R: AsyncRead + Unpin>(
    sender: &ChannelSender,
    stream_id: &str,
    mut reader: R,
    progress: impl FnMut(u64),
) -> Result<Sent> {
    let open = StreamOpen {
        stream_id: Some(stream_id.to_owned()),
        ..StreamOpen::default()
    };
    let position = sender.stream_open(&open).await?;
    let mut hasher = Sha256::new();
    let mut left = position.offset;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = reader.read(&mut buf[..want]).await.map_err(io)?;
        if n == 0 {
            return Err(Error::local(
                ErrorCode::InvalidPayload,
                "the payload is shorter than what the server holds of the stream",
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    pump(
        sender,
        stream_id,
        reader,
        hasher,
        position.next_seq,
        position.offset,
        progress,
    )
    .await
}

async fn pump<R: AsyncRead + Unpin>(
    sender: &ChannelSender,
    stream_id: &str,
    mut reader: R,
    mut hasher: Sha256,
    mut seq: u64,
    mut total: u64,
    mut progress: impl FnMut(u64),
) -> Result<Sent> {
    let mut in_flight = FuturesOrdered::new();
    let mut eof = false;
    loop {
        while !eof && in_flight.len() < IN_FLIGHT {
            let chunk = read_chunk(&mut reader).await?;
            if chunk.is_empty() {
                eof = true;
                break;
            }
            hasher.update(&chunk);
            total += chunk.len() as u64;
            let (sender, id, n) = (sender.clone(), stream_id.to_owned(), seq);
            in_flight.push_back(async move { sender.stream_chunk(&id, n, &chunk).await });
            seq += 1;
        }
        match in_flight.next().await {
            Some(acked) => progress(acked?.offset),
            None => break,
        }
    }
    let checksum = hex::encode(hasher.finalize());
    sender.stream_close(stream_id, &checksum, total).await?;
    Ok(Sent {
        stream_id: stream_id.to_owned(),
        total_size: total,
        checksum,
    })
}

async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    while filled < chunk.len() {
        let n = reader.read(&mut chunk[filled..]).await.map_err(io)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    chunk.truncate(filled);
    Ok(chunk)
}

fn io(e: std::io::Error) -> Error {
    Error::local(
        ErrorCode::InvalidPayload,
        format!("reading or writing the payload: {e}"),
    )
}

/// Acknowledge at least this often while receiving (the server sends 4 MiB ahead).
const ACK_EVERY: u64 = 1024 * 1024;

/// A stream being received into a writer.
#[derive(Debug)]
pub struct Incoming<W> {
    stream_id: String,
    writer: W,
    offset: u64,
    acked: u64,
    hasher: Sha256,
}

impl<W: AsyncWrite + Unpin> Incoming<W> {
    /// Accepts `offer` from its first byte, writing into `writer`.
    pub async fn accept(sender: &ChannelSender, offer: &StreamOffer, writer: W) -> Result<Self> {
        sender.stream_accept(&offer.stream_id, 0).await?;
        Ok(Incoming {
            stream_id: offer.stream_id.clone(),
            writer,
            offset: 0,
            acked: 0,
            hasher: Sha256::new(),
        })
    }

    /// Resumes `offer` after the `received` bytes `prefix` yields (what an earlier attempt
    /// wrote); `writer` continues after them.
    pub async fn resume<P: AsyncRead + Unpin>(
        sender: &ChannelSender,
        offer: &StreamOffer,
        mut prefix: P,
        writer: W,
    ) -> Result<Self> {
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = prefix.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            received += n as u64;
        }
        sender.stream_accept(&offer.stream_id, received).await?;
        Ok(Incoming {
            stream_id: offer.stream_id.clone(),
            writer,
            offset: received,
            acked: received,
            hasher,
        })
    }

    /// The stream.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.offset
    }

    /// Takes a `stream_data` event of this stream. Bytes it has already (re-sent after a
    /// resume) are skipped; a gap is a protocol error.
    pub async fn data(&mut self, sender: &ChannelSender, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = offset + bytes.len() as u64;
        if end <= self.offset {
            return Ok(());
        }
        if offset > self.offset {
            return Err(Error::Protocol(format!(
                "stream {} skipped from {} to {offset}",
                self.stream_id, self.offset
            )));
        }
        let fresh = &bytes[(self.offset - offset) as usize..];
        self.writer.write_all(fresh).await.map_err(io)?;
        self.hasher.update(fresh);
        self.offset = end;
        if self.offset - self.acked >= ACK_EVERY {
            self.writer.flush().await.map_err(io)?;
            sender
                .stream_ack(&self.stream_id, self.offset, false)
                .await?;
            self.acked = self.offset;
        }
        Ok(())
    }

    /// Takes the `stream_end` event: verifies the size and SHA-256 of what was written, then
    /// acknowledges the last byte (the sender is told the stream is complete). On a mismatch
    /// the stream is cancelled and the error is `checksum_mismatch`.
    pub async fn finish(mut self, sender: &ChannelSender, end: &StreamEnd) -> Result<W> {
        self.writer.flush().await.map_err(io)?;
        let checksum = hex::encode(self.hasher.finalize());
        if end.total_size != self.offset || !checksum.eq_ignore_ascii_case(&end.checksum) {
            let why = format!(
                "received {} bytes with SHA-256 {checksum}; the stream has {} bytes and {}",
                self.offset, end.total_size, end.checksum
            );
            let _ = sender.stream_cancel(&self.stream_id, Some(&why)).await;
            return Err(Error::local(ErrorCode::ChecksumMismatch, why));
        }
        sender
            .stream_ack(&self.stream_id, self.offset, true)
            .await?;
        Ok(self.writer)
    }
}
