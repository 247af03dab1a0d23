//! The Confluent wire format of a record's value: a zero "magic" byte, the
//! schema's id in the registry (4 bytes, big-endian), then the serialized
//! record, here JSON. Writers registered with a schema registry frame their
//! values so; readers take both framed values and plain JSON, which never
//! starts with a zero byte.

/// The first byte of a framed value.
const MAGIC: u8 = 0;
/// Magic byte and schema id.
const HEADER: usize = 5;

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Plain JSON, no frame.
    Plain(&'a [u8]),
    /// Framed: written with the schema `id`.
    Framed { id: u32, json: &'a [u8] },
    /// Starts with the magic byte but is too short for the header.
    Truncated,
}

/// `json` framed with schema `id`.
pub fn frame(id: u32, json: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER + json.len());
    framed.push(MAGIC);
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(json);
    framed
}

/// What `bytes` are.
pub fn read(bytes: &[u8]) -> Value<'_> {
    match bytes {
        [MAGIC, a, b, c, d, json @ ..] => Value::Framed {
            id: u32::from_be_bytes([*a, *b, *c, *d]),
            json,
        },
        [MAGIC, ..] => Value::Truncated,
        plain => Value::Plain(plain),
    }
}

/// The JSON of `bytes`, framed or not, unchecked: for a reader that has
/// no registry to check it with (the dashboard).
pub fn json(bytes: &[u8]) -> &[u8] {
    match read(bytes) {
        Value::Framed { json, .. } => json,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_value_is_the_magic_byte_the_id_and_the_json() {
        let framed = frame(0x0102_0304, br#"{"a":1}"#);
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(
            read(&framed),
            Value::Framed {
                id: 0x0102_0304,
                json: br#"{"a":1}"#
            }
        );
    }

    #[test]
    fn plain_json_and_a_cut_header_are_told_apart() {
        assert_eq!(read(b"{}"), Value::Plain(b"{}"));
        assert_eq!(read(b""), Value::Plain(b""));
        assert_eq!(read(&[0, 0, 1]), Value::Truncated);
        assert_eq!(read(&frame(7, b"")), Value::Framed { id: 7, json: b"" });
    }
}
