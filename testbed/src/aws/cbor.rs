//! CBOR (RFC 8949) to and from JSON values, as far as the Smithy RPC v2 CBOR protocol uses it: maps with text keys,
//! arrays, text, byte strings, integers, floats, booleans, null, and tag 1 (epoch-seconds timestamps). Both
//! definite and indefinite lengths are read; definite lengths are written.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Number, Value};

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("invalid CBOR at byte {at}: {what}")]
pub(crate) struct CborError {
    at: usize,
    what: &'static str,
}

/// Reads one CBOR data item as JSON: a timestamp (tag 1) becomes its number of seconds, a byte string base64 text
/// (the awsJson shapes of both).
pub(crate) fn to_json(bytes: &[u8]) -> Result<Value, CborError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.item()?.ok_or(reader.error("unexpected break"))?;
    if reader.at != bytes.len() {
        return Err(reader.error("trailing bytes"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

const BREAK: u8 = 0xff;

impl Reader<'_> {
    fn error(&self, what: &'static str) -> CborError {
        CborError { at: self.at, what }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(self.error("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// The argument of an initial byte: the value, length or tag number; None for indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, CborError> {
        let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => be(self.take(1)?),
            25 => be(self.take(2)?),
            26 => be(self.take(4)?),
            27 => be(self.take(8)?),
            31 => return Ok(None),
            _ => return Err(self.error("reserved additional information")),
        }))
    }

    fn length(&mut self, info: u8) -> Result<Option<usize>, CborError> {
        self.argument(info)?.map(|n| usize::try_from(n).map_err(|_| self.error("length too large"))).transpose()
    }

    /// The next item, or None at a break (the end of an indefinite-length container).
    fn item(&mut self) -> Result<Option<Value>, CborError> {
        let initial = self.take(1)?[0];
        if initial == BREAK {
            return Ok(None);
        }
        let (major, info) = (initial >> 5, initial & 0x1f);
        let value = match major {
            0 => Value::from(self.argument(info)?.ok_or(self.error("indefinite integer"))?),
            1 => {
                let n = self.argument(info)?.ok_or(self.error("indefinite integer"))?;
                let n = i64::try_from(n).map_err(|_| self.error("negative integer too large"))?;
                Value::from(-1 - n)
            }
            2 => Value::String(B64.encode(self.string_bytes(2, info)?)),
            3 => Value::String(
                String::from_utf8(self.string_bytes(3, info)?).map_err(|_| self.error("text is not UTF-8"))?,
            ),
            4 => {
                let mut items = Vec::new();
                match self.length(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(self.item()?.ok_or(self.error("break in a definite array"))?);
                        }
                    }
                    None => {
                        while let Some(item) = self.item()? {
                            items.push(item);
                        }
                    }
                }
                Value::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let count = self.length(info)?;
                let mut read = 0;
                while count.is_none_or(|n| read < n) {
                    let Some(key) = self.item()? else {
                        if count.is_some() {
                            return Err(self.error("break in a definite map"));
                        }
                        break;
                    };
                    let Value::String(key) = key else { return Err(self.error("map key is not text")) };
                    let value = self.item()?.ok_or(self.error("map key without a value"))?;
                    map.insert(key, value);
                    read += 1;
                }
                Value::Object(map)
            }
            // Tag 1 (epoch seconds) and any other tag: the tagged item itself.
            6 => {
                self.argument(info)?.ok_or(self.error("indefinite tag"))?;
                self.item()?.ok_or(self.error("tag without an item"))?
            }
            _ => self.simple(info)?,
        };
        Ok(Some(value))
    }

    /// A byte or text string, concatenating the chunks of an indefinite-length one.
    fn string_bytes(&mut self, major: u8, info: u8) -> Result<Vec<u8>, CborError> {
        if let Some(n) = self.length(info)? {
            return Ok(self.take(n)?.to_vec());
        }
        let mut out = Vec::new();
        loop {
            let initial = self.take(1)?[0];
            if initial == BREAK {
                return Ok(out);
            }
            if initial >> 5 != major {
                return Err(self.error("chunk of another type in an indefinite string"));
            }
            let n = self.length(initial & 0x1f)?.ok_or(self.error("nested indefinite string"))?;
            out.extend_from_slice(self.take(n)?);
        }
    }

    fn simple(&mut self, info: u8) -> Result<Value, CborError> {
        let f = match info {
            20 => return Ok(Value::Bool(false)),
            21 => return Ok(Value::Bool(true)),
            22 | 23 => return Ok(Value::Null),
            25 => {
                let b = self.take(2)?;
                f16_to_f64(u16::from_be_bytes([b[0], b[1]]))
            }
            26 => {
                let b = self.take(4)?;
                f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            27 => f64::from_be_bytes(self.take(8)?.try_into().expect("took 8 bytes")),
            _ => return Err(self.error("unsupported simple value")),
        };
        Number::from_f64(f).map(Value::Number).ok_or(self.error("NaN or infinite float"))
    }
}

fn f16_to_f64(half: u16) -> f64 {
    let sign = if half & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((half >> 10) & 0x1f);
    let fraction = f64::from(half & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// How a JSON member is written in CBOR when its JSON form does not tell (awsJson writes timestamps as numbers and
/// blobs as base64 text).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Plain,
    /// Epoch seconds: tag 1. Applies to a number or to each number of an array.
    Timestamp,
    /// Base64 text: a byte string.
    Blob,
}

/// Writes JSON as CBOR; `kind` says, by member name, which numbers are timestamps and which strings blobs.
pub(crate) fn from_json(value: &Value, kind: &dyn Fn(&str) -> Kind) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value, Kind::Plain, kind);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write(out: &mut Vec<u8>, value: &Value, as_kind: Kind, kind: &dyn Fn(&str) -> Kind) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(n) => {
            if as_kind == Kind::Timestamp {
                head(out, 6, 1);
            }
            if let Some(u) = n.as_u64() {
                head(out, 0, u);
            } else if let Some(i) = n.as_i64() {
                head(out, 1, (-1 - i) as u64);
            } else {
                out.push(0xfb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => match (as_kind == Kind::Blob).then(|| B64.decode(s).ok()).flatten() {
            Some(bytes) => {
                head(out, 2, bytes.len() as u64);
                out.extend_from_slice(&bytes);
            }
            None => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
        },
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                write(out, item, as_kind, kind);
            }
        }
        Value::Object(map) => {
            head(out, 5, map.len() as u64);
            for (key, item) in map {
                head(out, 3, key.len() as u64);
                out.extend_from_slice(key.as_bytes());
                write(out, item, kind(key), kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(key: &str) -> Kind {
        match key {
            "Timestamps" | "StartTime" => Kind::Timestamp,
            "Image" => Kind::Blob,
            _ => Kind::Plain,
        }
    }

    #[test]
    fn json_survives_a_round_trip_with_timestamps_and_blobs_in_their_cbor_types() {
        let doc = json!({
            "Values": [1.5, 2.0, -3.25], "Period": 60, "Offset": -7, "Label": "Invocations Sum",
            "Timestamps": [1796220186, 1796220246.5], "StartTime": 1796220000, "Image": "AAEC", "Ok": true,
            "Nothing": null, "Nested": {"Deep": [{"A": "b"}]}, "Long": "x".repeat(300)
        });
        let bytes = from_json(&doc, &kinds);
        assert_eq!(to_json(&bytes).unwrap(), doc);
        // Timestamps carry tag 1 (0xc1); blobs are byte strings (major 2: 0x43 = 3 bytes).
        let start = from_json(&json!({"StartTime": 5}), &kinds);
        assert_eq!(start, [0xa1, 0x69, b'S', b't', b'a', b'r', b't', b'T', b'i', b'm', b'e', 0xc1, 0x05]);
        assert!(from_json(&json!({"Image": "AAEC"}), &kinds).ends_with(&[0x43, 0, 1, 2]));
    }

    #[test]
    fn indefinite_lengths_half_floats_and_tags_are_read() {
        // {_ "a": [_ 1, f16 1.5], "t": 1(1700000000.5 as f64), "s": (_ "ab" "c")}
        let mut bytes = vec![0xbf, 0x61, b'a', 0x9f, 0x01, 0xf9, 0x3e, 0x00, 0xff, 0x61, b't', 0xc1, 0xfb];
        bytes.extend_from_slice(&1_700_000_000.5f64.to_be_bytes());
        bytes.extend_from_slice(&[0x61, b's', 0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff, 0xff]);
        assert_eq!(to_json(&bytes).unwrap(), json!({"a": [1, 1.5], "t": 1_700_000_000.5, "s": "abc"}));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [&[0x82, 0x01][..], &[0xa1, 0x01, 0x02], &[0x18], &[0x01, 0x02], &[0xff], &[0x7f, 0x01, 0xff]] {
            assert!(to_json(bad).is_err(), "{bad:?}");
        }
    }
}
