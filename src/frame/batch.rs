//! BATCH plaintexts: [`write_batch_record`] appends a length-prefixed record,
//! [`BatchRecords`] walks them.

use super::FrameError;

/// Appends one record of a BATCH plaintext: a 4-byte length, then the message.
pub fn write_batch_record(out: &mut Vec<u8>, message: &[u8]) {
    // Batches are bounded by MAX_PAYLOAD_LEN, far below u32::MAX.
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

/// Iterator over the messages of a BATCH plaintext.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    rest: &'a [u8],
}

impl<'a> BatchRecords<'a> {
    /// Walks the records of `plaintext`.
    pub fn new(plaintext: &'a [u8]) -> Self {
        BatchRecords { rest: plaintext }
    }
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = Result<&'a [u8], FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, body)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(FrameError::BadBatch("record shorter than its length")));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if body.len() < len {
            self.rest = &[];
            return Some(Err(FrameError::BadBatch("record longer than the batch")));
        }
        let (record, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(record))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn batch_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..20)) {
            let mut out = Vec::new();
            for m in &msgs {
                write_batch_record(&mut out, m);
            }
            let got: Vec<&[u8]> = BatchRecords::new(&out).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), msgs.len());
            for (g, m) in got.iter().zip(&msgs) {
                prop_assert_eq!(*g, &m[..]);
            }
        }
    }
}
