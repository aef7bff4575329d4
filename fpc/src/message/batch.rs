//! Batches written and read an op at a time: [`BatchWriter`] writes a
//! `Batch` frame without a `Vec<(Op, Object)>` first, [`SplitBatch`] reads
//! one with its routes kept apart from the other objects. Both give and
//! take exactly the bytes of `Message::Batch` (see the module's tests).

use crate::codec::{DecodeError, Reader};
use crate::object::Object;

use super::{batch_count, parse_op, Kind, Op, HEADER_LEN, MAGIC};

/// The most ops a [`SplitBatch`]'s vectors keep room for between batches
/// (cmgrd sends 1,024 a frame).
const KEEP_OPS: usize = 4096;

/// A `Batch` body decoded with its routes kept apart from the other
/// objects, each op with its index in the batch: a fast path that stores
/// routes in a form of its own takes them without an `Object` (232 bytes)
/// per route moved around. Decoded by the same rules as
/// [`Message::parse`] (a body it refuses is refused here with the same
/// error), whole before anything is used. The vectors keep their capacity
/// from one batch to the next, up to `KEEP_OPS` (4,096) ops.
#[derive(Debug, Default)]
pub struct SplitBatch {
    pub routes: Vec<(u32, Op, crate::Route)>,
    pub others: Vec<(u32, Op, Object)>,
}

impl SplitBatch {
    /// Decodes `body`, a `Batch` frame's body, in place of what was there.
    /// On an error the contents are unspecified (clear, or partly filled).
    pub fn parse(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        self.routes.clear();
        self.others.clear();
        let mut r = Reader::new(body);
        let count = batch_count(&mut r)?;
        for index in 0..count as u32 {
            let op = parse_op(&mut r)?;
            match Object::parse_route_apart(&mut r)? {
                Ok(route) => self.routes.push((index, op, route)),
                Err(obj) => self.others.push((index, op, obj)),
            }
        }
        r.finish()
    }

    pub fn len(&self) -> usize {
        self.routes.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the ops out in batch order, each route to `route` and each
    /// other object to `other` with its index (both given `state`),
    /// leaving the vectors' capacity.
    pub fn take_each<S>(
        &mut self,
        state: &mut S,
        mut route: impl FnMut(&mut S, u32, Op, crate::Route),
        mut other: impl FnMut(&mut S, u32, Op, Object),
    ) {
        let mut others = self.others.drain(..).peekable();
        for (index, op, r) in self.routes.drain(..) {
            while let Some((i, op, o)) = others.next_if(|o| o.0 < index) {
                other(state, i, op, o);
            }
            route(state, index, op, r);
        }
        for (i, op, o) in others {
            other(state, i, op, o);
        }
        // Kept for the next batch only up to a usual batch's size: one
        // huge batch does not pin its memory for the session's life.
        if self.routes.capacity() > KEEP_OPS {
            self.routes = Vec::new();
        }
        if self.others.capacity() > KEEP_OPS {
            self.others = Vec::new();
        }
    }

    /// The ops as a `Message::Batch` would hold them, in batch order (for
    /// tests and rare paths: this builds an `Object` per route).
    pub fn to_ops(&mut self) -> Vec<(Op, Object)> {
        let mut ops = Vec::with_capacity(self.len());
        self.take_each(
            &mut ops,
            |ops, _, op, r| ops.push((op, Object::Route(r))),
            |ops, _, op, o| ops.push((op, o)),
        );
        ops
    }
}

/// A `Batch` frame written an op at a time, without a `Vec<(Op, Object)>`
/// first: the bytes are those `Message::Batch(ops).emit(seq, buf)` gives
/// for the same ops (the count and body length are filled in by
/// [`BatchWriter::finish`]).
pub struct BatchWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    count: u32,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch frame with sequence number `seq` at the end of `buf`.
    pub fn new(seq: u64, buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.push(Kind::Batch as u8);
        buf.push(0);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        BatchWriter {
            buf,
            start,
            count: 0,
        }
    }

    pub fn push(&mut self, op: Op, obj: &Object) {
        self.buf.push(op as u8);
        obj.emit(self.buf);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Fills in the count and the body length; returns the ops written.
    pub fn finish(self) -> usize {
        let s = self.start;
        let body_len = (self.buf.len() - s - HEADER_LEN) as u32;
        self.buf[s + 4..s + 8].copy_from_slice(&body_len.to_be_bytes());
        self.buf[s + HEADER_LEN..s + HEADER_LEN + 4].copy_from_slice(&self.count.to_be_bytes());
        self.count as usize
    }
}
