//! Compact JSON output for the hot responses (`GET /connections/{id}`): byte-for-byte what
//! `serde_json::to_vec` writes for a `Value`, but strings that need no escaping (tokens, ids,
//! timestamps — nearly all of them) are copied whole instead of being scanned byte by byte by
//! serde_json's escaper, which was a quarter of the cost of a credential fetch.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// `value` as compact JSON, identical to `serde_json::to_vec(value)`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write(&mut out, value);
    out
}

/// A `200 application/json` response with `value` as its body (like `axum::Json`).
pub fn response(value: &Value) -> Response {
    let mut r = to_vec(value).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn write(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are rare and short here: serde_json's own formatting keeps them identical.
        Value::Number(n) => serde_json::to_writer(&mut *out, n).expect("writing to a Vec"),
        Value::String(s) => string(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, k);
                out.push(b':');
                write(out, item);
            }
            out.push(b'}');
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly `"`, `\` and control characters below 0x20.
    // Checked 64 bytes at a time without early exit, which the compiler vectorises.
    let plain = s.as_bytes().chunks(64).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_bytes_as_serde_json() {
        let v = json!({
            "token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_",
            "quote\"key": "a\"b\\c\n\t\u{1}\u{1f}",
            "unicode": "héllo ✓ \u{7f} \u{2028}",
            "n": [0, -1, 1.5, 1e300, u64::MAX, i64::MIN, 0.1],
            "empty": {}, "list": [], "null": null, "t": true, "f": false,
            "nested": {"a": [{"b": null}, "c"]},
        });
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
    }
}
