//! The floor: a plain pipelined tokio TCP echo with a length-prefixed frame
//! (`u32 length, u32 id, u8 method, body`). The server answers frames in order as they arrive
//! and writes every answer to one read's worth of requests at once; the client matches answers
//! to calls by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::Scenario;
use crate::load::{Measured, closed_loop};
use crate::messages::{check_reply, serve_bytes};

pub(crate) async fn serve() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream));
        }
    });
    Ok(address)
}

/// The length of a complete frame at the front of `input`, if one is there.
fn complete_frame(input: &mut BytesMut) -> Option<BytesMut> {
    let len = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    if input.len() < 4 + len {
        input.reserve(4 + len - input.len());
        return None;
    }
    input.advance(4);
    Some(input.split_to(len))
}

async fn connection(stream: TcpStream) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let (mut input, mut output) = (BytesMut::with_capacity(64 * 1024), BytesMut::new());
    loop {
        if read.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        while let Some(mut frame) = complete_frame(&mut input) {
            let (id, method) = (frame.get_u32(), frame.get_u8());
            let reply = serve_bytes(method == 1, &frame).map_err(std::io::Error::other)?;
            output.put_u32(5 + reply.len() as u32);
            output.put_u32(id);
            output.put_u8(method);
            output.put_slice(&reply);
        }
        write.write_all(&output).await?;
        output.clear();
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Bytes>>>>;

pub(crate) async fn load(address: &str, scenario: Scenario) -> Result<Measured, String> {
    let stream = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut read, mut write) = stream.into_split();
    let pending: Pending = Arc::default();
    let (frames, mut outbox) = mpsc::unbounded_channel::<BytesMut>();
    tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(frame) = outbox.recv().await {
            batch.extend_from_slice(&frame);
            while let Ok(frame) = outbox.try_recv() {
                batch.extend_from_slice(&frame);
            }
            if write.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
    });
    let answers = pending.clone();
    tokio::spawn(async move {
        let mut input = BytesMut::with_capacity(64 * 1024);
        while read.read_buf(&mut input).await.is_ok_and(|n| n > 0) {
            while let Some(mut frame) = complete_frame(&mut input) {
                let id = frame.get_u32();
                frame.advance(1);
                let waiting = answers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(frame.freeze());
                }
            }
        }
    });
    let request = scenario.payload.request();
    let next = AtomicU32::new(0);
    let call = || async {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let mut frame = BytesMut::with_capacity(9 + request.encoded_len());
        frame.put_u32(5 + request.encoded_len() as u32);
        frame.put_u32(id);
        frame.put_u8(u8::from(request.is_message()));
        request.encode(&mut frame);
        let (answer, answered) = oneshot::channel();
        pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, answer);
        frames.send(frame).map_err(|_| "the connection closed".to_owned())?;
        let reply = answered.await.map_err(|_| "the connection closed".to_owned())?;
        check_reply(request.is_message(), &reply)
    };
    Ok(closed_loop(call, scenario.concurrency, scenario.warm_up, scenario.window, super::announce).await)
}
