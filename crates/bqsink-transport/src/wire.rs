//! Protobuf wire-format writing into one growing buffer: varints, tags, and length prefixes
//! that are patched in place once the body is written (no scratch buffers, canonical output).

use bytes::{BufMut, BytesMut};

/// Wire type of varints.
pub const WIRE_VARINT: u32 = 0;
/// Wire type of 64-bit fixed values.
pub const WIRE_FIXED64: u32 = 1;
/// Wire type of length-delimited values.
pub const WIRE_LEN: u32 = 2;

/// Bytes a varint of `v` takes.
#[inline]
pub const fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Where wire bytes go: the batch buffer (`BytesMut`) or a row's scratch `Vec` (whose appends
/// inline, which `BytesMut`'s do not).
pub trait Out {
    /// Appends one byte.
    fn push_byte(&mut self, b: u8);
    /// Appends bytes.
    fn push_slice(&mut self, s: &[u8]);
    /// Bytes written so far.
    fn written(&self) -> usize;
    /// The bytes written, for patching length prefixes.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Appends `n` zero bytes.
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

/// Appends a varint.
#[inline]
pub fn put_varint<B: Out>(buf: &mut B, mut v: u64) {
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
pub struct Tag {
    bytes: [u8; 5],
    len: u8,
}

impl Tag {
    /// The key of field `number` with `wire_type`.
    pub const fn new(number: u32, wire_type: u32) -> Self {
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
    /// Appends the key.
    #[inline]
    pub fn put<B: Out>(&self, buf: &mut B) {
        // Fields 1–15 have one-byte keys: the common case, without a memcpy call.
        if self.len == 1 {
            buf.push_byte(self.bytes[0]);
        } else {
            buf.push_slice(&self.bytes[..self.len as usize]);
        }
    }
}

/// Appends a key, a length and the bytes.
#[inline]
pub fn put_len_bytes<B: Out>(buf: &mut B, tag: Tag, data: &[u8]) {
    tag.put(buf);
    put_varint(buf, data.len() as u64);
    buf.push_slice(data);
}

/// Reserves one byte for a length prefix; pair with [`end_len`].
#[inline]
pub fn begin_len<B: Out>(buf: &mut B) -> usize {
    buf.push_byte(0);
    buf.written()
}

/// Writes the length of everything after `body_start` into the reserved byte, shifting the
/// body right when the length needs more than one byte.
#[inline]
pub fn end_len<B: Out>(out: &mut B, body_start: usize) {
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
