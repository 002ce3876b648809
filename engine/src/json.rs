//! JSON text into `serde_json::Value` without serde_json's private raw-value marker.
//!
//! With the `raw_value` feature on (tauri and axum turn it on for the whole build), an
//! object whose first key is `$serde_json::private::RawValue` is not an object to
//! `serde_json::from_str::<Value>`: its value is parsed as JSON text, or the whole
//! document fails. Since a map's keys are written sorted, and `$` sorts early, a payload
//! that decoded fine could fail once the runner wrote it out again. Everything that
//! arrives from Kandan or Codex is decoded here instead, where the key is just a key.
//! Typed payloads refuse the key outright ([`reject_reserved_key`]): decoding a `Value`
//! field from a `Value` would give the marker its meaning again.
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The key serde_json gives a meaning of its own.
pub const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// Parses `text` as one JSON document; every object is an object.
pub fn from_str(text: &str) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Plain.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The key is refused wherever it appears in `value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key `{RESERVED_KEY}` is reserved")]
pub struct ReservedKey;

pub fn reject_reserved_key(value: &Value) -> Result<(), ReservedKey> {
    match value {
        Value::Object(map) => {
            if map.contains_key(RESERVED_KEY) {
                return Err(ReservedKey);
            }
            map.values().try_for_each(reject_reserved_key)
        }
        Value::Array(items) => items.iter().try_for_each(reject_reserved_key),
        _ => Ok(()),
    }
}

struct Plain;

impl<'de> DeserializeSeed<'de> for Plain {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(Plain)
    }
}

impl<'de> Visitor<'de> for Plain {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Plain.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Plain)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Plain)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_reserved_key_is_an_ordinary_key_and_survives_a_round_trip() {
        for text in [
            r#"{"a":1,"$serde_json::private::RawValue":true}"#,
            r#"{"$serde_json::private::RawValue":true}"#,
            r#"{"$serde_json::private::RawValue":"{\"evil\":1}","b":[{"$serde_json::private::RawValue":null}]}"#,
        ] {
            let value = from_str(text).unwrap();
            assert!(
                value.as_object().unwrap().contains_key(RESERVED_KEY),
                "{text}"
            );
            let again = from_str(&serde_json::to_string(&value).unwrap()).unwrap();
            assert_eq!(again, value, "{text}");
            assert_eq!(reject_reserved_key(&value), Err(ReservedKey));
        }
    }

    #[test]
    fn everything_else_decodes_as_serde_json_does() {
        let text =
            r#"{"n":-1,"u":18446744073709551615,"f":1.5,"s":"x\u00e9","z":null,"l":[true,{}]}"#;
        let value = from_str(text).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(reject_reserved_key(&value), Ok(()));
        assert_eq!(reject_reserved_key(&json!([{"a": {"b": []}}])), Ok(()));
        assert!(from_str("[1,").is_err());
        assert!(from_str("{} {}").is_err(), "trailing data");
    }
}
