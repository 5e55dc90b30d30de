//! Compact JSON writer for response bodies: a `serde::Serializer` that writes exactly the bytes
//! `serde_json::to_vec` writes, but copies strings that need no escaping (tokens, ids, timestamps,
//! keys — nearly all of them) whole. serde_json looks every byte of every string up in its escape
//! table, which for a credential fetch (a ~1–2 KB access token, twice: `access_token` and `raw`)
//! was the largest single cost of the rendering.
//!
//! Numbers go through serde_json's own `CompactFormatter` and strings that do need escaping through
//! serde_json itself, so the output stays byte-for-byte serde_json's (tested below, also against
//! random values).

use std::fmt;

use serde::ser::{self, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

/// `value` as compact JSON, the bytes of `serde_json::to_vec(value)`, into a buffer of `capacity`.
pub fn to_vec_with_capacity<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new(capacity, None);
    value.serialize(&mut w)?;
    Ok(w.out)
}

/// Like `to_vec_with_capacity`, and where the value of the field `field` of the outermost struct
/// was written (`None` when it has no such field). `api::fetch_body` renders a body once with
/// a placeholder there and writes each call's value in its place.
pub fn to_vec_marking<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
    field: &'static str,
) -> Result<(Vec<u8>, Option<std::ops::Range<usize>>), Error> {
    let mut w = Writer::new(capacity, Some(field));
    value.serialize(&mut w)?;
    Ok((w.out, w.marked))
}

/// `s` as a JSON string (the bytes serde_json writes for it), appended to `out`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("writing to a Vec");
    }
}

/// A value serde_json would also refuse (e.g. a map key that is not a string).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

struct Writer {
    out: Vec<u8>,
    /// How many arrays and objects are open (1 inside the outermost struct).
    depth: u32,
    /// The outermost struct's field whose value's position is wanted.
    mark: Option<&'static str>,
    marked: Option<std::ops::Range<usize>>,
}

/// Whether serde_json would write `s` unchanged: no `"`, `\\` or control character below 0x20.
/// Checked 32 bytes at a time without early exit (measured cheaper than 64-byte chunks with a
/// flag: 8.7k vs 9.6k instructions per credential fetch).
fn plain(s: &str) -> bool {
    s.as_bytes().chunks(32).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
    })
}

impl Writer {
    fn new(capacity: usize, mark: Option<&'static str>) -> Writer {
        Writer {
            out: Vec::with_capacity(capacity),
            depth: 0,
            mark,
            marked: None,
        }
    }

    fn string(&mut self, s: &str) {
        write_str(&mut self.out, s);
    }
}

macro_rules! number {
    ($name:ident, $t:ty, $write:ident) => {
        fn $name(self, v: $t) -> Result<(), Error> {
            CompactFormatter
                .$write(&mut self.out, v)
                .expect("writing to a Vec");
            Ok(())
        }
    };
}

impl<'a> ser::Serializer for &'a mut Writer {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    number!(serialize_i8, i8, write_i8);
    number!(serialize_i16, i16, write_i16);
    number!(serialize_i32, i32, write_i32);
    number!(serialize_i64, i64, write_i64);
    number!(serialize_i128, i128, write_i128);
    number!(serialize_u8, u8, write_u8);
    number!(serialize_u16, u16, write_u16);
    number!(serialize_u32, u32, write_u32);
    number!(serialize_u64, u64, write_u64);
    number!(serialize_u128, u128, write_u128);

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if v.is_finite() {
            CompactFormatter
                .write_f32(&mut self.out, v)
                .expect("writing to a Vec");
        } else {
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_finite() {
            CompactFormatter
                .write_f64(&mut self.out, v)
                .expect("writing to a Vec");
        } else {
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.string(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.string(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        self.string(variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        self.out.push(b'[');
        self.depth += 1;
        Ok(Compound {
            w: self,
            first: true,
            close: b"]",
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        self.out.push(b'{');
        self.string(variant);
        self.out.extend_from_slice(b":[");
        self.depth += 1;
        Ok(Compound {
            w: self,
            first: true,
            close: b"]}",
        })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        self.out.push(b'{');
        self.depth += 1;
        Ok(Compound {
            w: self,
            first: true,
            close: b"}",
        })
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        self.out.push(b'{');
        self.string(variant);
        self.out.extend_from_slice(b":{");
        self.depth += 1;
        Ok(Compound {
            w: self,
            first: true,
            close: b"}}",
        })
    }
}

/// An array or object being written: commas between elements, the closing bytes at the end.
pub struct Compound<'a> {
    w: &'a mut Writer,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.w.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.w)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        self.w.string(key);
        self.w.out.push(b':');
        if self.w.mark.is_some_and(|m| m == key) && self.w.depth == 1 {
            let start = self.w.out.len();
            value.serialize(&mut *self.w)?;
            self.w.marked = Some(start..self.w.out.len());
            return Ok(());
        }
        value.serialize(&mut *self.w)
    }

    fn close(self) -> Result<(), Error> {
        self.w.out.extend_from_slice(self.close);
        self.w.depth -= 1;
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(MapKey(&mut *self.w))?;
        self.w.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A map key: strings as themselves; anything else through serde_json's own key rules (numbers
/// and booleans quoted, other types refused), so the output matches it there too.
struct MapKey<'a>(&'a mut Writer);

impl MapKey<'_> {
    fn via_serde_json<T: Serialize + ?Sized>(self, key: &T) -> Result<(), Error> {
        // serde_json writes a lone key as `{"key":null}`: keep what is between `{` and `:null}`.
        struct One<'k, K: ?Sized>(&'k K);
        impl<K: Serialize + ?Sized> Serialize for One<'_, K> {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(self.0, &())?;
                m.end()
            }
        }
        let v = serde_json::to_vec(&One(key)).map_err(|e| Error(e.to_string()))?;
        self.0
            .out
            .extend_from_slice(&v[1..v.len() - ":null}".len()]);
        Ok(())
    }
}

macro_rules! key_via_serde_json {
    ($($name:ident: $t:ty),*) => {
        $(fn $name(self, v: $t) -> Result<(), Error> {
            self.via_serde_json(&v)
        })*
    };
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.string(v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.0.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.0.string(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    key_via_serde_json!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
        serialize_f64: f64, serialize_bytes: &[u8]
    );

    fn serialize_none(self) -> Result<(), Error> {
        self.via_serde_json(&None::<()>)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.via_serde_json(&Some(value))
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.via_serde_json(&())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.via_serde_json(&())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

fn key_must_be_a_string() -> Error {
    Error("key must be a string".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn same<T: Serialize>(v: &T) {
        assert_eq!(
            String::from_utf8(to_vec_with_capacity(v, 0).unwrap()).unwrap(),
            serde_json::to_string(v).unwrap()
        );
    }

    #[test]
    fn same_bytes_as_serde_json() {
        same(&json!({
            "token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_",
            "quote\"key": "a\"b\\c\n\t\u{1}\u{1f}\u{8}\u{c}\r",
            "unicode": "héllo ✓ \u{7f} \u{2028} 😀",
            "long": "x".repeat(100) + "\"" + &"y".repeat(100),
            "n": [0, -1, 1.5, 1e300, u64::MAX, i64::MIN, 0.1, -0.0, 1e-7],
            "empty": {}, "list": [], "null": null, "t": true, "f": false,
            "nested": {"a": [{"b": null}, "c"]},
        }));
        let mut m = BTreeMap::new();
        m.insert(3u32, "three");
        m.insert(10u32, "ten");
        same(&m);
        let mut b = BTreeMap::new();
        b.insert(true, 'x');
        same(&b);
        same(&(
            1u8,
            'é',
            f64::NAN,
            f32::INFINITY,
            (),
            Some(2.5f32),
            None::<i8>,
        ));
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(i32),
            Tuple(i32, String),
            Struct { a: Vec<u8> },
        }
        same(&[
            E::Unit,
            E::New(-7),
            E::Tuple(1, "t\"".into()),
            E::Struct { a: vec![1, 2] },
        ]);
        #[derive(serde::Serialize)]
        struct Flat {
            id: i64,
            #[serde(flatten)]
            rest: serde_json::Map<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            absent: Option<i8>,
        }
        let mut rest = serde_json::Map::new();
        rest.insert("k\n".into(), json!([1, "a"]));
        same(&Flat {
            id: 4,
            rest,
            absent: None,
        });
        let mut bad = BTreeMap::new();
        bad.insert(vec![1], 1);
        assert!(to_vec_with_capacity(&bad, 0).is_err());
        assert!(serde_json::to_vec(&bad).is_err());
    }

    #[test]
    fn marks_the_outermost_structs_field_only() {
        #[derive(serde::Serialize)]
        struct Inner {
            at: Option<&'static str>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            inner: Inner,
            list: Vec<Inner>,
            map: BTreeMap<&'static str, &'static str>,
            at: Option<&'static str>,
            after: &'static str,
        }
        let o = Outer {
            inner: Inner { at: Some("in") },
            list: vec![Inner { at: None }],
            map: BTreeMap::from([("at", "m")]),
            at: Some("x\"y"),
            after: "z",
        };
        let (b, m) = to_vec_marking(&o, 0, "at").unwrap();
        assert_eq!(b, serde_json::to_vec(&o).unwrap());
        assert_eq!(&b[m.unwrap()], br#""x\"y""#);
        let (_, m) = to_vec_marking(&o, 0, "nowhere").unwrap();
        assert_eq!(m, None);
        let (_, m) = to_vec_marking(&json!({"at": 1}), 0, "at").unwrap();
        assert_eq!(m, None, "a map's key is not a struct's field");
        let mut s = Vec::new();
        write_str(&mut s, "a\"\n");
        assert_eq!(s, serde_json::to_vec("a\"\n").unwrap());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[ -~\\t\\n\\u{0}-\\u{1f}\"\\\\é✓]{0,80}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_values_same_bytes_as_serde_json(v in value()) {
            prop_assert_eq!(
                to_vec_with_capacity(&v, 0).unwrap(),
                serde_json::to_vec(&v).unwrap()
            );
        }
    }
}
