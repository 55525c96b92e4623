//! The JSON scanner under the transcoder: a cursor over one row's text that reads strings
//! (borrowed, escapes decoded only when present), numbers (classified as a JSON reader does) and
//! literals, and skips whole values (checking their syntax) without recursion.

use bqsink_core::Scalar;

/// Bytes that end a run of plain string bytes: the quote, the backslash, control characters.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The high bit of each byte of `w` that is a quote, a backslash or a control character (exact
/// for the lowest such byte, which is all the caller uses).
#[inline]
fn stops_in(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (LO * u64::from(b'"'));
    let backslash = w ^ (LO * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(LO) & !quote;
    let zero_backslash = backslash.wrapping_sub(LO) & !backslash;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (zero_quote | zero_backslash | control) & HI
}

/// Deepest nesting of arrays and objects read (as serde_json's default limit).
pub const MAX_DEPTH: usize = 128;

/// The input is not JSON: the whole row is refused with this.
#[derive(Debug)]
pub(crate) struct Syntax(pub(crate) String);

pub(crate) type Parsed<T> = Result<T, Syntax>;

/// Where a key sits in the row text (decoded again only when it held escapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) escaped: bool,
}

/// The text of a key, decoded into `buf` when it held escapes.
pub(crate) fn key_text<'a>(s: &'a str, k: KeyRef, buf: &'a mut String) -> Parsed<&'a str> {
    let raw = &s[k.start as usize..k.end as usize];
    if k.escaped {
        unescape(raw, buf)?;
        Ok(buf.as_str())
    } else {
        Ok(raw)
    }
}

/// Whether two keys are the same text once decoded.
pub(crate) fn same_key(s: &str, a: KeyRef, b: KeyRef, tmp: &mut String) -> Parsed<bool> {
    let (ra, rb) = (&s[a.start as usize..a.end as usize], &s[b.start as usize..b.end as usize]);
    if !a.escaped && !b.escaped {
        return Ok(ra == rb);
    }
    let mut other = String::new();
    unescape(ra, tmp)?;
    unescape(rb, &mut other)?;
    Ok(*tmp == other)
}

/// Decodes the body of a JSON string (between its quotes) into `out`.
pub(crate) fn unescape(raw: &str, out: &mut String) -> Parsed<()> {
    out.clear();
    let b = raw.as_bytes();
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[run..i]);
        let esc = *b.get(i + 1).ok_or_else(|| Syntax("unfinished escape".into()))?;
        i += 2;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(b, i)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                        return Err(Syntax("lone leading surrogate in hex escape".into()));
                    }
                    let lo = hex4(b, i + 2)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Syntax("lone leading surrogate in hex escape".into()));
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    char::from_u32(hi)
                };
                out.push(c.ok_or_else(|| Syntax("invalid unicode code point".into()))?);
            }
            _ => return Err(Syntax("invalid escape".into())),
        }
        run = i;
    }
    out.push_str(&raw[run..]);
    Ok(())
}

/// Length of the escape starting with the backslash at `b[i]`, checked by [`unescape`]'s rules.
fn escape_len(b: &[u8], i: usize) -> Parsed<usize> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(2),
        Some(b'u') => match hex4(b, i + 2)? {
            0xD800..=0xDBFF => {
                let low = match (b.get(i + 6), b.get(i + 7)) {
                    (Some(b'\\'), Some(b'u')) => hex4(b, i + 8)?,
                    _ => return Err(Syntax("lone leading surrogate in hex escape".into())),
                };
                if (0xDC00..0xE000).contains(&low) {
                    Ok(12)
                } else {
                    Err(Syntax("lone leading surrogate in hex escape".into()))
                }
            }
            0xDC00..=0xDFFF => Err(Syntax("invalid unicode code point".into())),
            _ => Ok(6),
        },
        _ => Err(Syntax("invalid escape".into())),
    }
}

pub(crate) fn hex4(b: &[u8], at: usize) -> Parsed<u32> {
    let digits = b.get(at..at + 4).ok_or_else(|| Syntax("unfinished \\u escape".into()))?;
    let mut v = 0u32;
    for d in digits {
        let x = (*d as char).to_digit(16).ok_or_else(|| Syntax("invalid \\u escape".into()))?;
        v = v * 16 + x;
    }
    Ok(v)
}

/// Where the parts of a number are, once its grammar is checked.
struct NumberShape {
    negative: bool,
    int_start: usize,
    int_end: usize,
    has_fraction: bool,
    has_exponent: bool,
}

/// A cursor over one row's text.
pub(crate) struct Parser<'a> {
    pub(crate) s: &'a str,
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    pub(crate) fn error(&self, what: &str) -> Syntax {
        match self.peek() {
            Some(_) => Syntax(format!("{what} at column {}", self.i + 1)),
            None => Syntax(format!("{what} at the end of the line")),
        }
    }

    pub(crate) fn literal(&mut self, word: &str) -> Parsed<()> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A string (cursor on its opening quote): where its body is and whether it has escapes.
    #[inline]
    pub(crate) fn string_ref(&mut self) -> Parsed<KeyRef> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            // One pass, byte by byte: strings are short, and a table lookup beats a search
            // call's setup for them.
            let b = self.b;
            let mut i = self.i;
            // Eight bytes at a time while none of them ends the run, then byte by byte.
            while let Some(word) = b.get(i..i + 8) {
                let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
                let m = stops_in(w);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while i < b.len() && !STOP[usize::from(b[i])] {
                i += 1;
            }
            self.i = i;
            match b.get(i) {
                None => return Err(Syntax("unterminated string".into())),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(KeyRef { start: start as u32, end: i as u32, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    if i + 1 >= b.len() {
                        return Err(Syntax("unterminated string".into()));
                    }
                    // Checked here, not only when the string is decoded: a string that is only
                    // skipped or classified must be JSON too.
                    self.i += escape_len(b, i)?;
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// A number, classified as a JSON reader does: integers within INT64 as `Int`, larger ones
    /// up to 2^64 − 1 as `Decimal`, the rest as `Float`.
    pub(crate) fn number(&mut self) -> Parsed<Scalar<'a>> {
        let start = self.i;
        let n = self.number_grammar()?;
        let (negative, int_start, int_end, is_float) =
            (n.negative, n.int_start, n.int_end, n.has_fraction || n.has_exponent);
        let text = &self.s[start..self.i];
        if !is_float {
            let digits = &self.b[int_start..int_end];
            let mut mag: u64 = 0;
            let mut fits = true;
            for d in digits {
                match mag.checked_mul(10).and_then(|m| m.checked_add(u64::from(d - b'0'))) {
                    Some(m) => mag = m,
                    None => {
                        fits = false;
                        break;
                    }
                }
            }
            if fits {
                if !negative {
                    return Ok(if mag <= i64::MAX as u64 { Scalar::Int(mag as i64) } else { Scalar::Decimal(text) });
                }
                if mag == 0 {
                    return Ok(Scalar::Float(-0.0));
                }
                if mag <= 1u64 << 63 {
                    return Ok(Scalar::Int((mag as i64).wrapping_neg()));
                }
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Scalar::Float(f)),
            _ => Err(Syntax(format!("number out of range at column {}", start + 1))),
        }
    }

    /// Skips a number, checking its grammar; only one that could overflow a float (a long
    /// mantissa or an exponent) is converted, to refuse it as a JSON reader does.
    pub(crate) fn skip_number(&mut self) -> Parsed<()> {
        let start = self.i;
        let n = self.number_grammar()?;
        if n.has_exponent || self.i - start > 300 {
            self.i = start;
            return self.number().map(|_| ());
        }
        Ok(())
    }

    /// Reads `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, saying where its parts are.
    fn number_grammar(&mut self) -> Parsed<NumberShape> {
        let negative = self.eat(b'-');
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let int_end = self.i;
        let has_fraction = self.eat(b'.');
        if has_fraction {
            self.required_digits()?;
        }
        let has_exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if has_exponent {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.required_digits()?;
        }
        Ok(NumberShape { negative, int_start, int_end, has_fraction, has_exponent })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn required_digits(&mut self) -> Parsed<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("invalid number"));
        }
        self.digits();
        Ok(())
    }

    /// Skips one value of any kind, checking its syntax, without recursion.
    pub(crate) fn skip_value(&mut self) -> Parsed<()> {
        // Open containers, innermost last: true for an object.
        let mut stack = [false; MAX_DEPTH];
        let mut depth = 0usize;
        loop {
            self.ws();
            // A value.
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let is_object = self.peek() == Some(b'{');
                    if depth == MAX_DEPTH {
                        return Err(self.error("nesting deeper than 128 levels"));
                    }
                    stack[depth] = is_object;
                    depth += 1;
                    self.i += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.eat(close) {
                        depth -= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    let k = self.string_ref()?;
                    if k.escaped {
                        let mut tmp = String::new();
                        unescape(&self.s[k.start as usize..k.end as usize], &mut tmp)?;
                    }
                }
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                _ => return Err(self.error("expected a value")),
            }
            // After a value: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let is_object = stack[depth - 1];
                let close = if is_object { b'}' } else { b']' };
                if self.eat(b',') {
                    self.ws();
                    if is_object {
                        self.member_key()?;
                    }
                    break;
                }
                if self.eat(close) {
                    depth -= 1;
                    continue;
                }
                return Err(self.error(if is_object { "expected `,` or `}`" } else { "expected `,` or `]`" }));
            }
        }
    }

    /// `"key":` inside an object being skipped.
    pub(crate) fn member_key(&mut self) -> Parsed<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key"));
        }
        let k = self.string_ref()?;
        if k.escaped {
            let mut tmp = String::new();
            unescape(&self.s[k.start as usize..k.end as usize], &mut tmp)?;
        }
        self.ws();
        if !self.eat(b':') {
            return Err(self.error("expected `:`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Result<KeyRef, String> {
        let mut p = Parser { s: text, b: text.as_bytes(), i: 0 };
        p.string_ref().map_err(|e| e.0)
    }

    /// Found by fuzzing Segment payloads: a string the scanner only classified or skipped was
    /// not checked past its backslashes, so `"\<NUL>"` planned rows the `Record` path refuses.
    #[test]
    fn escapes_are_checked_in_strings_that_are_not_decoded() {
        for good in [r#""a\"b\\c\/\b\f\n\r\t""#, r#""\u00e9\ud83d\ude00""#] {
            assert!(string(good).is_ok(), "{good}");
        }
        for bad in
            ["\"\\\0x\"", r#""\x""#, r#""\ud800""#, r#""\ud800\u0041""#, r#""\udc00""#, r#""\u12""#, r#""\u12g4""#]
        {
            assert!(string(bad).is_err(), "{bad}");
        }
    }
}
