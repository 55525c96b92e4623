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

#[inline]
pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
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
    pub(crate) fn put(&self, buf: &mut BytesMut) {
        // Fields 1–15 have one-byte keys: the common case, without a memcpy call.
        if self.len == 1 {
            buf.put_u8(self.bytes[0]);
        } else {
            buf.put_slice(&self.bytes[..self.len as usize]);
        }
    }
}

#[inline]
pub(crate) fn put_len_bytes(buf: &mut BytesMut, tag: Tag, data: &[u8]) {
    tag.put(buf);
    put_varint(buf, data.len() as u64);
    buf.put_slice(data);
}

/// Reserves one byte for a length prefix; pair with [`end_len`].
#[inline]
pub(crate) fn begin_len(buf: &mut BytesMut) -> usize {
    buf.put_u8(0);
    buf.len()
}

/// Writes the length of everything after `body_start` into the reserved byte, shifting the
/// body right when the length needs more than one byte.
#[inline]
pub(crate) fn end_len(buf: &mut BytesMut, body_start: usize) {
    let body_len = buf.len() - body_start;
    let n = varint_len(body_len as u64);
    if n == 1 {
        buf[body_start - 1] = body_len as u8;
        return;
    }
    let extra = n - 1;
    buf.put_bytes(0, extra);
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
