//! A cursor over fuzz input bytes, and the encoder that writes the same
//! layout for seed files.

/// Reads integers and byte runs off the front of the fuzz input. Every read
/// returns `None` once the input is used up, which ends the harness loop.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        let (b, rest) = self.rest.split_first_chunk::<2>()?;
        self.rest = rest;
        Some(u16::from_be_bytes(*b))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        let (b, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        Some(u32::from_be_bytes(*b))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        let (b, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_be_bytes(*b))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (b, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        b
    }

    /// A run of bytes preceded by its `u8` length.
    pub fn short_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        Some(self.bytes(usize::from(n)))
    }

    /// A run of bytes preceded by its big-endian `u16` length.
    pub fn long_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        Some(self.bytes(usize::from(n)))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Writes what [`Input`] reads: used by the seed generator.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Output {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Bytes preceded by a `u8` length. Panics above 255 bytes (seed bug).
    pub fn short_bytes(&mut self, b: &[u8]) -> &mut Self {
        let n = u8::try_from(b.len()).expect("short_bytes takes at most 255 bytes");
        self.u8(n).bytes(b)
    }

    /// Bytes preceded by a `u16` length. Panics above 65535 bytes (seed bug).
    pub fn long_bytes(&mut self, b: &[u8]) -> &mut Self {
        let n = u16::try_from(b.len()).expect("long_bytes takes at most 65535 bytes");
        self.u16(n).bytes(b)
    }

    /// The encoded input.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_input_agree() {
        let buf = Output::new()
            .u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .short_bytes(b"ab")
            .long_bytes(b"cde")
            .finish();
        let mut i = Input::new(&buf);
        assert_eq!(i.u8(), Some(1));
        assert_eq!(i.u16(), Some(2));
        assert_eq!(i.u32(), Some(3));
        assert_eq!(i.u64(), Some(4));
        assert_eq!(i.short_bytes(), Some(&b"ab"[..]));
        assert_eq!(i.long_bytes(), Some(&b"cde"[..]));
        assert!(i.is_empty());
        assert_eq!(i.u8(), None);
    }
}
