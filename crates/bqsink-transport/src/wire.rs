//! Protobuf wire-format writing into one growing buffer: varints, tags, and length prefixes
//! that are patched in place once the body is written (no scratch buffers, canonical output).

use bytes::{BufMut, BytesMut};

pub(crate) const WIRE_VARINT: u32 = 0;
pub(crate) const WIRE_FIXED64: u32 = 1;
pub(crate) const WIRE_LEN: u32 = 2;

/// Bytes a varint of `v` takes.
#[inline]
pub(crate) const fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Where wire bytes go: the batch buffer (`BytesMut`) or a row's scratch `Vec` (whose appends
/// inline, which `BytesMut`'s do not).
pub(crate) trait Out {
    fn push_byte(&mut self, b: u8);
    fn push_slice(&mut self, s: &[u8]);
    fn written(&self) -> usize;
    fn bytes_mut(&mut self) -> &mut [u8];
    fn push_zeros(&mut self, n: usize);
}

impl Out for BytesMut {
    #[inline]
    fn push_byte(&mut self, b: u8) {
        self.put_u8(b);
    }
    #[inline]
    fn push_slice(&mut self, s: &[u8]) {
        self.put_slice(s);
    }
    #[inline]
    fn written(&self) -> usize {
        self.len()
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    #[inline]
    fn push_zeros(&mut self, n: usize) {
        self.put_bytes(0, n);
    }
}

impl Out for Vec<u8> {
    #[inline]
    fn push_byte(&mut self, b: u8) {
        self.push(b);
    }
    #[inline]
    fn push_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
    #[inline]
    fn written(&self) -> usize {
        self.len()
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    #[inline]
    fn push_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

#[inline]
pub(crate) fn put_varint<B: Out>(buf: &mut B, mut v: u64) {
    if v < 0x80 {
        buf.push_byte(v as u8);
        return;
    }
    // Built on the stack, appended with one capacity check.
    let mut out = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    buf.push_slice(&out[..=n]);
}

/// The encoded key of a field, precomputed once per field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tag {
    bytes: [u8; 5],
    len: u8,
}

impl Tag {
    pub(crate) const fn new(number: u32, wire_type: u32) -> Self {
        let mut v = ((number as u64) << 3) | wire_type as u64;
        let mut bytes = [0u8; 5];
        let mut len = 0;
        while v >= 0x80 {
            bytes[len] = (v as u8) | 0x80;
            v >>= 7;
            len += 1;
        }
        bytes[len] = v as u8;
        Self { bytes, len: len as u8 + 1 }
    }
    #[inline]
    pub(crate) fn put<B: Out>(&self, buf: &mut B) {
        // Fields 1–15 have one-byte keys: the common case, without a memcpy call.
        if self.len == 1 {
            buf.push_byte(self.bytes[0]);
        } else {
            buf.push_slice(&self.bytes[..self.len as usize]);
        }
    }
}

#[inline]
pub(crate) fn put_len_bytes<B: Out>(buf: &mut B, tag: Tag, data: &[u8]) {
    tag.put(buf);
    put_varint(buf, data.len() as u64);
    buf.push_slice(data);
}

/// Reserves one byte for a length prefix; pair with [`end_len`].
#[inline]
pub(crate) fn begin_len<B: Out>(buf: &mut B) -> usize {
    buf.push_byte(0);
    buf.written()
}

/// Writes the length of everything after `body_start` into the reserved byte, shifting the
/// body right when the length needs more than one byte.
#[inline]
pub(crate) fn end_len<B: Out>(out: &mut B, body_start: usize) {
    let body_len = out.written() - body_start;
    let n = varint_len(body_len as u64);
    if n == 1 {
        out.bytes_mut()[body_start - 1] = body_len as u8;
        return;
    }
    let extra = n - 1;
    out.push_zeros(extra);
    let buf = out.bytes_mut();
    buf.copy_within(body_start..body_start + body_len, body_start + extra);
    let mut v = body_len as u64;
    let mut at = body_start - 1;
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_their_length() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn patched_lengths_are_canonical() {
        for len in [0usize, 1, 127, 128, 300, 20_000, 3_000_000] {
            let mut b = BytesMut::new();
            b.put_u8(0xAA);
            let start = begin_len(&mut b);
            b.put_bytes(7, len);
            end_len(&mut b, start);
            let mut expect = BytesMut::new();
            expect.put_u8(0xAA);
            put_varint(&mut expect, len as u64);
            expect.put_bytes(7, len);
            assert_eq!(b, expect, "{len}");
        }
    }
}
