//! Moving frames. Many tasks append frames to one [`Outbox`] and one writer task drains it, so
//! every frame queued while a write is under way goes out in the next single vectored write:
//! under load, many calls share one syscall. Small frames are copied into one buffer; a large
//! body is written from its own allocation. [`FrameReader`] cuts small frames out of one read
//! buffer without copying their bodies, and reads a large one into a buffer of its own.
//!
//! Coalescing alone would make a connection under moderate load take turns: the client sends a
//! batch and waits, the server reads the whole batch, runs every call, answers in one write,
//! then waits for the next. A server's reader that has caught up with its client therefore lets
//! the calls it handed over run every [`PAUSE_EVERY`] frames, so the first answers leave while
//! it still holds requests, and both sides work at once. A reader behind its client does not
//! pause: under heavy load the answers share writes. A client's reader never pauses: its server
//! having sent everything says nothing about whether the server waits for more.

use std::io::IoSlice;
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::frame::{self, Frame, Interner, Kind};

/// Bodies at least this large are written from their own buffer instead of being copied.
const ZERO_COPY_MIN: usize = 8 * 1024;
/// Buffers written per `writev`.
const MAX_SLICES: usize = 64;
const READ_CHUNK: usize = 64 * 1024;
/// Frames at least this large are read into a buffer of their own. Cut out of the shared read
/// buffer, a large frame that its call keeps alive made the next read allocate a new buffer
/// larger than the frame, which glibc handed back to the kernel and faulted in again call after
/// call (a quarter of a 64 KiB call's client time went to page faults).
const OWN_BUFFER_MIN: usize = ZERO_COPY_MIN;
/// Frames a reader that has caught up with its peer hands over between pauses.
const PAUSE_EVERY: usize = 4;

/// Frames waiting for the writer.
#[derive(Debug)]
pub(crate) struct Outbox {
    pending: Mutex<Pending>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    buf: BytesMut,
    chunks: Vec<Bytes>,
    interner: Interner,
    /// Why no more frames are taken, once they are not.
    closed: Option<String>,
    /// The writer should end once what is queued is written.
    closing: bool,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox { pending: Mutex::new(Pending::default()), ready: Notify::new() }
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame: `head` writes what precedes `body` (with the string table, so that the
    /// table's order is the wire's order). Fails with the reason once the connection is closed.
    pub(crate) fn push(
        &self,
        kind: Kind,
        flags: u8,
        call: u32,
        head: impl FnOnce(&mut BytesMut, &mut Interner),
        body: Bytes,
    ) -> Result<(), String> {
        {
            let mut pending = self.lock();
            if let Some(why) = &pending.closed {
                return Err(why.clone());
            }
            let Pending { buf, chunks, interner, .. } = &mut *pending;
            let start = frame::start_frame(buf, kind, flags, call);
            head(buf, interner);
            if body.len() >= ZERO_COPY_MIN {
                frame::finish_frame(buf, start, body.len());
                chunks.push(buf.split().freeze());
                chunks.push(body);
            } else {
                buf.extend_from_slice(&body);
                frame::finish_frame(buf, start, 0);
            }
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Takes no more frames, and lets the writer end after writing what is queued.
    pub(crate) fn close(&self, why: &str) {
        {
            let mut pending = self.lock();
            pending.closed.get_or_insert_with(|| why.to_owned());
            pending.closing = true;
        }
        self.ready.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// What is queued, or `None` when the writer should end.
    fn take(&self) -> Option<Vec<Bytes>> {
        let mut pending = self.lock();
        let mut batch = std::mem::take(&mut pending.chunks);
        if !pending.buf.is_empty() {
            batch.push(pending.buf.split().freeze());
        }
        if batch.is_empty() && pending.closing { None } else { Some(batch) }
    }

    /// Writes queued frames to `io` until closed; each batch is one vectored write.
    pub(crate) async fn drain<W: AsyncWrite + Unpin>(&self, mut io: W) -> std::io::Result<()> {
        let result = async {
            while let Some(batch) = self.take() {
                if batch.is_empty() {
                    self.ready.notified().await;
                    continue;
                }
                write_all(&mut io, batch).await?;
                io.flush().await?;
            }
            io.shutdown().await
        }
        .await;
        if let Err(e) = &result {
            self.close(&format!("writing failed: {e}"));
        }
        result
    }
}

async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, mut chunks: Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = (chunks.len() - first).min(MAX_SLICES);
        for (slice, chunk) in slices.iter_mut().zip(&chunks[first..first + count]) {
            *slice = IoSlice::new(chunk);
        }
        let mut written = io.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let chunk = &mut chunks[first];
            if written >= chunk.len() {
                written -= chunk.len();
                first += 1;
            } else {
                chunk.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

/// Why a connection's reading ended.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The peer closed the connection between frames.
    Closed,
    Io(std::io::Error),
    /// The peer sent something that is not a frame, or too large a one.
    Malformed(String),
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Closed => f.write_str("the peer closed the connection"),
            ReadEnd::Io(e) => write!(f, "reading failed: {e}"),
            ReadEnd::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

/// Reads frames of at most `max_frame` bytes.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: usize,
    /// Whether to pause when caught up (a server's reader).
    pausing: bool,
    /// The last read took all the peer had sent.
    caught_up: bool,
    /// Frames returned since the reader last paused or had to read.
    handed_over: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, max_frame: usize) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
            pausing: false,
            caught_up: false,
            handed_over: 0,
        }
    }

    /// A reader that pauses when caught up with its client, as the module's docs say.
    pub(crate) fn pausing(self) -> FrameReader<R> {
        FrameReader { pausing: true, ..self }
    }

    async fn fill(&mut self, want: usize) -> Result<(), ReadEnd> {
        while self.buf.len() < want {
            self.buf.reserve((want - self.buf.len()).max(READ_CHUNK));
            let room = self.buf.capacity() - self.buf.len();
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(ReadEnd::Closed),
                Ok(0) => return Err(ReadEnd::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(read) => self.caught_up = read < room,
                Err(e) => return Err(ReadEnd::Io(e)),
            }
        }
        Ok(())
    }

    /// The next frame; see the module's docs for when it first lets other tasks run. Dropped
    /// while it reads a frame of [`OWN_BUFFER_MIN`] bytes or more, the reader loses its place in
    /// the stream: its connection is done with.
    pub(crate) async fn next(&mut self) -> Result<Frame, ReadEnd> {
        if self.buf.len() < 4 {
            self.handed_over = 0;
        } else if self.pausing && self.caught_up && self.handed_over >= PAUSE_EVERY {
            self.handed_over = 0;
            tokio::task::yield_now().await;
        }
        self.fill(4).await?;
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len < frame::HEAD_LEN - 4 {
            return Err(ReadEnd::Malformed(format!("a frame of {len} bytes is shorter than its head")));
        }
        if len > self.max_frame {
            return Err(ReadEnd::Malformed(format!(
                "a frame of {len} bytes exceeds the limit of {} bytes",
                self.max_frame
            )));
        }
        let frame = if len >= OWN_BUFFER_MIN {
            self.buf.advance(4);
            self.read_alone(len).await?
        } else {
            self.fill(4 + len).await?;
            self.buf.advance(4);
            self.buf.split_to(len)
        };
        self.handed_over += 1;
        Frame::parse(frame.freeze()).map_err(ReadEnd::Malformed)
    }

    /// Reads the `len` bytes of a frame into a buffer of exactly that size: what is buffered
    /// already, then straight from the connection.
    async fn read_alone(&mut self, len: usize) -> Result<BytesMut, ReadEnd> {
        let mut frame = BytesMut::with_capacity(len);
        let buffered = self.buf.len().min(len);
        frame.extend_from_slice(&self.buf[..buffered]);
        self.buf.advance(buffered);
        while frame.len() < len {
            let room = len - frame.len();
            match self.io.read_buf(&mut frame).await {
                Ok(0) => return Err(ReadEnd::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(read) => self.caught_up = read < room,
                Err(e) => return Err(ReadEnd::Io(e)),
            }
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_frames_leave_in_one_write_and_read_back() {
        let outbox = Outbox::default();
        let big = Bytes::from(vec![5u8; ZERO_COPY_MIN]);
        for call in 0..3 {
            outbox.push(Kind::Message, 0, call, |_, _| {}, Bytes::from_static(b"hi")).unwrap();
        }
        outbox.push(Kind::Message, 0, 3, |_, _| {}, big.clone()).unwrap();
        outbox.close("done");
        assert_eq!(outbox.push(Kind::Close, 0, 4, |_, _| {}, Bytes::new()), Err("done".to_owned()));
        let mut wire = Vec::new();
        outbox.drain(&mut wire).await.unwrap();
        assert_eq!(wire.len(), 3 * (frame::HEAD_LEN + 2) + frame::HEAD_LEN + big.len());
        let mut reader = FrameReader::new(wire.as_slice(), 1 << 20);
        for call in 0..3 {
            let frame = reader.next().await.unwrap();
            assert_eq!((frame.kind, frame.call, &frame.body[..]), (Kind::Message, call, &b"hi"[..]));
        }
        assert_eq!(reader.next().await.unwrap().body, big);
        assert!(matches!(reader.next().await, Err(ReadEnd::Closed)));
    }

    #[tokio::test]
    async fn a_large_frame_read_in_pieces_comes_back_whole_and_a_cut_one_is_an_error() {
        let body = Bytes::from((0..OWN_BUFFER_MIN * 3).map(|i| i as u8).collect::<Vec<u8>>());
        let mut wire = BytesMut::new();
        let start = frame::start_frame(&mut wire, Kind::Message, 0, 7);
        wire.extend_from_slice(&body);
        frame::finish_frame(&mut wire, start, 0);
        let (mut writer, reader) = tokio::io::duplex(1000);
        let sent = wire.clone();
        tokio::spawn(async move { writer.write_all(&sent).await });
        let frame = FrameReader::new(reader, 1 << 20).next().await.unwrap();
        assert_eq!((frame.call, frame.body), (7, body));

        let cut = &wire[..wire.len() - 1];
        let end = FrameReader::new(cut, 1 << 20).next().await.unwrap_err();
        assert_eq!(end.to_string(), "reading failed: unexpected end of file");
    }

    /// Ten frames that arrive in one read, as a client's batch does.
    fn ten_frames() -> Vec<u8> {
        let mut wire = BytesMut::new();
        for call in 0..10 {
            let start = frame::start_frame(&mut wire, Kind::Message, 0, call);
            frame::finish_frame(&mut wire, start, 0);
        }
        wire.to_vec()
    }

    /// How many frames `reader` returns before a task spawned beside it first runs.
    async fn frames_before_other_tasks_run<R: AsyncRead + Unpin>(mut reader: FrameReader<R>) -> usize {
        use std::sync::atomic::{AtomicBool, Ordering};
        let ran = std::sync::Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let mut frames = 0;
        while reader.next().await.is_ok() && !ran.load(Ordering::SeqCst) {
            frames += 1;
        }
        frames
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_caught_up_server_reader_lets_calls_run_every_few_frames() {
        let wire = ten_frames();
        let server = FrameReader::new(wire.as_slice(), 1 << 20).pausing();
        assert_eq!(frames_before_other_tasks_run(server).await, PAUSE_EVERY);
        let client = FrameReader::new(wire.as_slice(), 1 << 20);
        assert_eq!(frames_before_other_tasks_run(client).await, 10, "a client's reader does not pause");
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_malformed() {
        let oversized = [0u8, 0, 1, 0, 2, 0, 0, 0, 0, 1];
        let end = FrameReader::new(&oversized[..], 255).next().await.unwrap_err();
        assert_eq!(end.to_string(), "malformed frame: a frame of 256 bytes exceeds the limit of 255 bytes");
        let truncated = [0u8, 0, 0, 9, 2, 0];
        assert!(matches!(FrameReader::new(&truncated[..], 255).next().await, Err(ReadEnd::Io(_))));
    }
}
