//! The wire format. Every frame is a 10-byte head and a body:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | length of what follows the length, big-endian |
//! | 1 | [`Kind`] |
//! | 1 | flags, by kind |
//! | 4 | call id, chosen by the caller, big-endian |
//! | rest | body |
//!
//! | kind | from | body |
//! |---|---|---|
//! | `Open` | client | timeout (if [`OPEN_TIMEOUT`]), service, endpoint, content type, metadata; with [`OPEN_LAST`] the only request follows (a unary call in one frame) |
//! | `Message` | either | one message |
//! | `Close` | client | nothing: no more requests |
//! | `Cancel` | client | nothing: the caller gave up |
//! | `Credit` | either | u32: how many more stream messages the peer may send |
//! | `Header` | server | metadata |
//! | `End` | server | metadata (if [`END_HEADER`]), then the error as JSON (if [`END_ERROR`]) or the only response (if [`END_REPLY`]) |
//!
//! Header compaction: service, endpoint, content type and metadata keys are strings that repeat
//! on every call, so each side keeps a per-connection table. The first time a sender writes a
//! short string it sends it with [`STRING_NEW`] and both sides give it the next index; after that
//! it sends [`STRING_REF`] and the two-byte index. A unary call to a known endpoint thus costs
//! 10 bytes of frame head and about 8 bytes of call head besides its body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use foldhash::HashMap;
use rmicro_core::metadata::Metadata;
use rmicro_core::{Error, Result};

/// The head every frame starts with, length prefix included.
pub(crate) const HEAD_LEN: usize = 10;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Open = 1,
    Message = 2,
    Close = 3,
    Cancel = 4,
    Credit = 5,
    Header = 6,
    End = 7,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Open,
            2 => Kind::Message,
            3 => Kind::Close,
            4 => Kind::Cancel,
            5 => Kind::Credit,
            6 => Kind::Header,
            7 => Kind::End,
            _ => return None,
        })
    }
}

/// `Open`: the call streams.
pub(crate) const OPEN_STREAM: u8 = 1;
/// `Open`: the only request follows the call head.
pub(crate) const OPEN_LAST: u8 = 2;
/// `Open`: a timeout in milliseconds leads the body.
pub(crate) const OPEN_TIMEOUT: u8 = 4;
/// `End`: the body carries an error.
pub(crate) const END_ERROR: u8 = 1;
/// `End`: the call was refused before any handler saw it.
pub(crate) const END_REFUSED: u8 = 2;
/// `End`: response metadata leads the body.
pub(crate) const END_HEADER: u8 = 4;
/// `End`: the only response follows.
pub(crate) const END_REPLY: u8 = 8;

const STRING_LITERAL: u8 = 0;
const STRING_NEW: u8 = 1;
const STRING_REF: u8 = 2;
/// Strings longer than this are sent literally every time.
const INTERN_MAX_LEN: usize = 128;
/// How many strings a connection's table holds; later strings are sent literally.
const TABLE_MAX: usize = 4096;

/// A frame as read, its body sharing the read buffer.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) flags: u8,
    pub(crate) call: u32,
    pub(crate) body: Bytes,
}

impl Frame {
    /// Parses the frame after its length prefix; the caller checked that at least 6 bytes follow.
    pub(crate) fn parse(mut frame: Bytes) -> std::result::Result<Frame, String> {
        let kind = frame.get_u8();
        let kind = Kind::from_byte(kind).ok_or_else(|| format!("unknown frame kind {kind}"))?;
        let flags = frame.get_u8();
        let call = frame.get_u32();
        Ok(Frame { kind, flags, call, body: frame })
    }
}

/// Writes a frame head with a length to be set by [`finish_frame`].
pub(crate) fn start_frame(buf: &mut BytesMut, kind: Kind, flags: u8, call: u32) -> usize {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u8(kind as u8);
    buf.put_u8(flags);
    buf.put_u32(call);
    start
}

/// Sets the length of the frame started at `start`, whose body ends `trailing` bytes after the
/// buffer (a body sent as its own chunk).
pub(crate) fn finish_frame(buf: &mut BytesMut, start: usize, trailing: usize) {
    let len = (buf.len() - start - 4 + trailing) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The sending side's string table.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, u16>,
}

impl Interner {
    pub(crate) fn put_str(&mut self, buf: &mut BytesMut, s: &str) {
        if let Some(id) = self.ids.get(s) {
            buf.put_u8(STRING_REF);
            buf.put_u16(*id);
            return;
        }
        let intern = s.len() <= INTERN_MAX_LEN && self.ids.len() < TABLE_MAX;
        if intern {
            self.ids.insert(s.into(), self.ids.len() as u16);
        }
        buf.put_u8(if intern { STRING_NEW } else { STRING_LITERAL });
        buf.put_u16(s.len() as u16);
        buf.put_slice(s.as_bytes());
    }

    pub(crate) fn put_metadata(&mut self, buf: &mut BytesMut, metadata: &Metadata) {
        buf.put_u16(metadata.len() as u16);
        for (key, value) in metadata.iter() {
            self.put_str(buf, key);
            buf.put_u32(value.len() as u32);
            buf.put_slice(value.as_bytes());
        }
    }
}

/// The most a call head or a metadata block may take on the wire; frames may be this much larger
/// than the largest message.
pub(crate) const HEAD_ALLOWANCE: usize = 64 * 1024;

/// Checks, before anything is written, that strings and metadata fit their length fields and
/// the head fits [`HEAD_ALLOWANCE`] however they are encoded.
pub(crate) fn check_head<'a>(strings: impl IntoIterator<Item = &'a str>, metadata: &Metadata) -> Result<()> {
    let strings: usize = strings.into_iter().map(|s| 3 + s.len()).sum();
    let metadata_len: usize = metadata.iter().map(|(key, value)| 3 + key.len() + 4 + value.len()).sum();
    let size = 4 + strings + 2 + metadata_len;
    if size > HEAD_ALLOWANCE {
        return Err(Error::bad_request(format!(
            "a call head or metadata of {size} bytes exceeds the limit of {HEAD_ALLOWANCE} bytes"
        )));
    }
    Ok(())
}

/// The receiving side's string table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    strings: Vec<String>,
}

/// Reads a frame body; every shortfall is a malformed frame.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    body: &'a mut Bytes,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a mut Bytes) -> Reader<'a> {
        Reader { body }
    }

    fn need(&self, n: usize, what: &str) -> std::result::Result<(), String> {
        if self.body.remaining() < n { Err(format!("frame ends inside its {what}")) } else { Ok(()) }
    }

    pub(crate) fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        self.need(4, what)?;
        Ok(self.body.get_u32())
    }

    fn bytes(&mut self, n: usize, what: &str) -> std::result::Result<Bytes, String> {
        self.need(n, what)?;
        Ok(self.body.split_to(n))
    }

    fn utf8(bytes: Bytes, what: &str) -> std::result::Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }

    pub(crate) fn string(&mut self, table: &mut Table, what: &str) -> std::result::Result<String, String> {
        self.need(3, what)?;
        let mode = self.body.get_u8();
        let n = self.body.get_u16() as usize;
        match mode {
            STRING_REF => table.strings.get(n).cloned().ok_or_else(|| format!("the {what} names unknown string {n}")),
            STRING_LITERAL | STRING_NEW => {
                let s = Reader::utf8(self.bytes(n, what)?, what)?;
                if mode == STRING_NEW {
                    if table.strings.len() >= TABLE_MAX {
                        return Err(format!("the {what} overflows the string table"));
                    }
                    table.strings.push(s.clone());
                }
                Ok(s)
            }
            other => Err(format!("the {what} has unknown string mode {other}")),
        }
    }

    pub(crate) fn metadata(&mut self, table: &mut Table) -> std::result::Result<Metadata, String> {
        self.need(2, "metadata")?;
        let count = self.body.get_u16();
        let mut metadata = Metadata::new();
        for _ in 0..count {
            let key = self.string(table, "metadata key")?;
            let len = self.u32("metadata value")? as usize;
            let value = Reader::utf8(self.bytes(len, "metadata value")?, "metadata value")?;
            metadata.insert(key, value);
        }
        Ok(metadata)
    }

    /// What is left of the body.
    pub(crate) fn rest(self) -> Bytes {
        std::mem::take(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_strings_shrink_to_references() {
        let (mut interner, mut table) = (Interner::default(), Table::default());
        let metadata: Metadata = [("x-trace", "t-1"), ("x-user", "ada")].into_iter().collect();
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let mut buf = BytesMut::new();
            interner.put_str(&mut buf, "Greeter.Hello");
            interner.put_metadata(&mut buf, &metadata);
            sizes.push(buf.len());
            let mut body = buf.freeze();
            let mut reader = Reader::new(&mut body);
            assert_eq!(reader.string(&mut table, "endpoint").unwrap(), "Greeter.Hello");
            assert_eq!(reader.metadata(&mut table).unwrap(), metadata);
            assert!(reader.rest().is_empty());
        }
        assert_eq!(sizes, [16 + 2 + 10 + 7 + 9 + 7, 3 + 2 + 3 + 7 + 3 + 7]);
    }

    #[test]
    fn truncated_and_unknown_input_is_refused() {
        let mut table = Table::default();
        let mut short = Bytes::from_static(&[STRING_LITERAL, 0, 9, b'a']);
        assert!(Reader::new(&mut short).string(&mut table, "service").unwrap_err().contains("ends inside"));
        let mut dangling = Bytes::from_static(&[STRING_REF, 0, 3]);
        assert!(Reader::new(&mut dangling).string(&mut table, "service").unwrap_err().contains("unknown string 3"));
        let mut not_utf8 = Bytes::from_static(&[STRING_LITERAL, 0, 1, 0xff]);
        assert!(Reader::new(&mut not_utf8).string(&mut table, "service").unwrap_err().contains("UTF-8"));
        assert!(Frame::parse(Bytes::from_static(&[99, 0, 0, 0, 0, 1])).unwrap_err().contains("kind 99"));
    }
}
