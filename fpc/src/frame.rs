//! The one FPC frame reader, for every side: fpd's server, the cache
//! manager's blade tasks, the supervisor's probes (async) and the tools'
//! [`crate::QueryClient`] (blocking).
//!
//! Invariants:
//! * A frame whose header announces more than the reader's limit is refused
//!   before any of its body is read: the buffer never holds more than the
//!   limit, and it grows with what arrives, so a header alone allocates
//!   little.
//! * A clean end of stream between frames is [`FrameError::Closed`]; one
//!   inside a header or a body is [`FrameError::Truncated`], saying how far
//!   it got.
//! * After a read, a body buffer grown past [`KEEP_BUFFER`] is released, so
//!   one large dump does not pin its memory for the connection's life.
//! * `last_seq` is the sequence number of the last header parsed (what an
//!   Error frame answering a bad frame refers to).

use std::io::{self, Read};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::DecodeError;
use crate::message::{hello_version, parse_header, Header, Message, SplitBatch, HEADER_LEN};

/// A body buffer larger than this after a read is released.
pub const KEEP_BUFFER: usize = 256 * 1024;

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed between frames.
    #[error("connection closed")]
    Closed,
    #[error("connection closed inside a frame {part} ({got} of {of} bytes)")]
    Truncated {
        part: &'static str,
        got: usize,
        of: usize,
    },
    #[error("bad frame header: {0}")]
    Header(DecodeError),
    #[error("a frame of {len} bytes is over this connection's limit of {limit} bytes")]
    Oversize { len: usize, limit: usize },
    /// The body does not decode; `hello_version` is the version a Hello
    /// announced, if the frame was one (a peer of another version).
    #[error("bad frame body: {error}")]
    Body {
        error: DecodeError,
        hello_version: Option<u16>,
    },
    #[error("I/O error")]
    Io(#[from] io::Error),
}

/// Reads frames from `reader`, at most `limit` body bytes each.
#[derive(Debug)]
pub struct FrameReader<R> {
    pub reader: R,
    body: Vec<u8>,
    /// The sequence number of the last frame header read.
    pub last_seq: u64,
    /// The largest body a frame may announce (and so be buffered).
    pub limit: usize,
}

impl<R> FrameReader<R> {
    pub fn new(reader: R, limit: usize) -> Self {
        Self::with_buffer(reader, Vec::new(), limit)
    }

    /// A reader that fills `body` (taken back with [`Self::into_buffer`]).
    pub fn with_buffer(reader: R, body: Vec<u8>, limit: usize) -> Self {
        FrameReader {
            reader,
            body,
            last_seq: 0,
            limit,
        }
    }

    pub fn into_buffer(self) -> Vec<u8> {
        self.body
    }

    /// The header's checks: decodes, and within the limit.
    fn header(&mut self, raw: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let header = parse_header(raw).map_err(FrameError::Header)?;
        self.last_seq = header.seq;
        if header.body_len > self.limit {
            return Err(FrameError::Oversize {
                len: header.body_len,
                limit: self.limit,
            });
        }
        self.body.clear();
        Ok(header)
    }

    /// The body's decoding, once `n` bytes of it arrived.
    fn finish(&mut self, header: Header, n: usize) -> Result<(Header, Message), FrameError> {
        self.decoded(header, n, |body| {
            Message::parse(&header, body)
                .map(|msg| (header, msg))
                .map_err(|error| FrameError::Body {
                    error,
                    hello_version: hello_version(&header, body),
                })
        })
    }

    /// [`Self::finish`], a `Batch` decoded into `batch` (then no message).
    fn finish_split(
        &mut self,
        header: Header,
        n: usize,
        batch: &mut SplitBatch,
    ) -> Result<(Header, Option<Message>), FrameError> {
        if !Message::is_batch(&header) {
            return self.finish(header, n).map(|(h, m)| (h, Some(m)));
        }
        self.decoded(header, n, |body| {
            batch
                .parse(body)
                .map(|()| (header, None))
                .map_err(|error| FrameError::Body {
                    error,
                    hello_version: None,
                })
        })
    }

    /// `decode` of the body when all of it arrived (`n` bytes of
    /// `header.body_len`), else the truncation; a large buffer released
    /// either way.
    fn decoded<T>(
        &mut self,
        header: Header,
        n: usize,
        decode: impl FnOnce(&[u8]) -> Result<T, FrameError>,
    ) -> Result<T, FrameError> {
        let result = if n < header.body_len {
            Err(FrameError::Truncated {
                part: "body",
                got: n,
                of: header.body_len,
            })
        } else {
            decode(&self.body)
        };
        if self.body.capacity() > KEEP_BUFFER {
            self.body = Vec::new();
        }
        result
    }
}

/// What a header read of `got` bytes that hit the end of stream means.
fn header_end(got: usize) -> FrameError {
    if got == 0 {
        FrameError::Closed
    } else {
        FrameError::Truncated {
            part: "header",
            got,
            of: HEADER_LEN,
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads and decodes one whole frame. Not cancel-safe: a frame read
    /// halfway is lost with the future.
    pub async fn read(&mut self) -> Result<(Header, Message), FrameError> {
        let (header, n) = self.read_raw().await?;
        self.finish(header, n)
    }

    /// A frame's header, checked, and its body read into `self.body`
    /// (how many bytes came), not yet decoded.
    async fn read_raw(&mut self) -> Result<(Header, usize), FrameError> {
        let mut raw = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.reader.read(&mut raw[got..]).await? {
                0 => return Err(header_end(got)),
                n => got += n,
            }
        }
        let header = self.header(&raw)?;
        let n = (&mut self.reader)
            .take(header.body_len as u64)
            .read_to_end(&mut self.body)
            .await?;
        Ok((header, n))
    }

    /// Reads one frame as [`Self::read`] does, but decodes a `Batch` into
    /// `batch` (then the message is `None`): the same checks, its routes
    /// apart (see [`SplitBatch`]).
    pub async fn read_split(
        &mut self,
        batch: &mut SplitBatch,
    ) -> Result<(Header, Option<Message>), FrameError> {
        let (header, n) = self.read_raw().await?;
        self.finish_split(header, n, batch)
    }
}

impl<R: Read> FrameReader<R> {
    /// [`FrameReader::read`] on a blocking stream.
    pub fn read_blocking(&mut self) -> Result<(Header, Message), FrameError> {
        let mut raw = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.reader.read(&mut raw[got..]) {
                Ok(0) => return Err(header_end(got)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let header = self.header(&raw)?;
        let n = (&mut self.reader)
            .take(header.body_len as u64)
            .read_to_end(&mut self.body)?;
        self.finish(header, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MAX_BODY;

    fn frame(msg: &Message, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        msg.emit(seq, &mut out);
        out
    }

    #[test]
    fn reads_frames_then_closed() {
        let mut bytes = frame(&Message::CountersRequest, 4);
        bytes.extend(frame(&Message::DumpRequest, 5));
        let mut r = FrameReader::new(&bytes[..], MAX_BODY);
        assert!(matches!(
            r.read_blocking(),
            Ok((_, Message::CountersRequest))
        ));
        assert_eq!(r.last_seq, 4);
        assert!(matches!(r.read_blocking(), Ok((_, Message::DumpRequest))));
        assert!(matches!(r.read_blocking(), Err(FrameError::Closed)));
    }

    #[test]
    fn truncation_says_where() {
        let bytes = frame(&Message::Counters(vec![("x".into(), 1)]), 1);
        let mut r = FrameReader::new(&bytes[..3], MAX_BODY);
        let e = r.read_blocking().unwrap_err();
        assert_eq!(
            e.to_string(),
            "connection closed inside a frame header (3 of 16 bytes)"
        );
        let cut = bytes.len() - 1;
        let mut r = FrameReader::new(&bytes[..cut], MAX_BODY);
        assert!(matches!(
            r.read_blocking(),
            Err(FrameError::Truncated { part: "body", .. })
        ));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_its_body() {
        let bytes = frame(&Message::Counters(vec![("x".repeat(100), 1)]), 9);
        let mut r = FrameReader::new(&bytes[..HEADER_LEN], 10);
        match r.read_blocking() {
            Err(FrameError::Oversize { limit: 10, len }) => assert!(len > 100),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.last_seq, 9);
    }

    #[tokio::test]
    async fn async_and_blocking_agree() {
        let bytes = frame(&Message::CountersRequest, 2);
        let mut r = FrameReader::new(&bytes[..], MAX_BODY);
        assert!(matches!(r.read().await, Ok((_, Message::CountersRequest))));
        assert!(matches!(r.read().await, Err(FrameError::Closed)));
    }
}
