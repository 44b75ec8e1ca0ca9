//! The protobuf wire format: tags, varints, fixed-width values and length-delimited bytes.
//! <https://protobuf.dev/programming-guides/encoding/>

/// One field value as it sits on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "fixed64",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "fixed32",
        }
    }
}

/// Iterates the fields of one encoded message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&byte, rest)) = self.buf.split_first() else {
                return Err("truncated varint".into());
            };
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    pub fn fixed64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    pub fn fixed32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("field of {n} bytes overruns the message ({} left)", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value, or None at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| format!("field number {} out of range", tag >> 3))?;
        if number == 0 {
            return Err("field number 0".into());
        }
        let value = match tag & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            other => return Err(format!("unsupported wire type {other} for field {number}")),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_an_error() {
        assert!(Reader::new(&[0x08]).field().is_err()); // varint missing
        assert!(Reader::new(&[0x0a, 0x05, b'a']).field().is_err()); // length overruns
        assert!(Reader::new(&[0xff; 11]).field().is_err()); // endless varint
        assert!(Reader::new(&[0x0b]).field().is_err()); // group
        assert!(Reader::new(&[0x00]).field().is_err()); // field 0
        let mut r = Reader::new(&[0x08, 0x96, 0x01]);
        assert!(matches!(r.field(), Ok(Some((1, WireValue::Varint(150))))));
        assert!(matches!(r.field(), Ok(None)));
    }
}
