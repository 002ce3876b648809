//! What of an event reaches the log. Credentials are replaced by a marker wherever they
//! are: fields and headers named like one (as JSON objects, `[name, value]` pairs or
//! `{name, value}` objects), parameters in URLs and query strings, bearer tokens and
//! URL user info in text, and the known secrets (the access token) anywhere. What people
//! wrote and what passes through a preview (prompts, chat text, request and response
//! bodies, WebSocket messages) is kept as its size. A text too long for a line is cut
//! to its beginning first, so a huge event costs little to log.
use std::ops::Range;

use serde_json::{Map, Value, json};

pub(super) const REDACTED: &str = "[REDACTED]";
/// Texts (values and keys) longer than this are cut to this length.
pub(super) const LONG_TEXT_BYTES: usize = 2 * 1024;

/// Fields (compared lowercase, without `-` and `_`) whose contents are kept as a size.
const CONTENT_KEYS: &[&str] = &[
    "body",
    "bodybase64",
    "data",
    "input",
    "text",
    "delta",
    "prompt",
    "content",
    "workdescription",
];

pub(super) struct Redactor<'a> {
    secrets: &'a [String],
    /// Whether a text was cut.
    pub(super) cut: bool,
}

impl<'a> Redactor<'a> {
    pub(super) fn new(secrets: &'a [String]) -> Self {
        Redactor {
            secrets,
            cut: false,
        }
    }

    pub(super) fn redact(&mut self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(self.redact_object(map)),
            Value::Array(items) => self.redact_array(items),
            Value::String(text) => {
                let text = self.shorten(text);
                Value::String(redact_text(&text).unwrap_or(text))
            }
            other => other,
        }
    }

    fn redact_object(&mut self, map: Map<String, Value>) -> Map<String, Value> {
        // `{"name": "Cookie", "value": "…"}`: a header as an object of its own.
        let names_a_secret = map
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(is_secret_name);
        map.into_iter()
            .map(|(key, value)| {
                let value = if value.is_null() {
                    value
                } else if is_secret_name(&key) || (names_a_secret && key == "value") {
                    Value::String(REDACTED.into())
                } else if is_content(&key) {
                    json!({ "omittedBytes": json_len(&value) })
                } else {
                    self.redact(value)
                };
                (self.shorten(key), value)
            })
            .collect()
    }

    fn redact_array(&mut self, items: Vec<Value>) -> Value {
        // `["Authorization", "…"]`: a header as a name-value pair.
        if let [Value::String(name), value] = items.as_slice()
            && !value.is_null()
            && is_secret_name(name)
        {
            return json!([self.shorten(name.clone()), REDACTED]);
        }
        Value::Array(items.into_iter().map(|item| self.redact(item)).collect())
    }

    /// `text`, or its beginning and its length when it is too long for a line. Known
    /// secrets are masked before the cut, which could otherwise leave half of one.
    fn shorten(&mut self, text: String) -> String {
        if text.len() <= LONG_TEXT_BYTES {
            return text;
        }
        self.cut = true;
        let text = mask(text, self.secrets);
        let mut head = LONG_TEXT_BYTES;
        while !text.is_char_boundary(head) {
            head -= 1;
        }
        format!("{}… [cut from {} bytes]", &text[..head], text.len())
    }
}

/// `text` with every occurrence of each of `secrets` replaced.
pub(super) fn mask(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// About how many bytes `value` takes as JSON (unescaped), without writing it out.
fn json_len(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => number.to_string().len(),
        Value::String(text) => text.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|item| json_len(item) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(key, value)| key.len() + 4 + json_len(value))
                .sum::<usize>()
        }
    }
}

fn is_content(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    CONTENT_KEYS.contains(&key.as_str())
}

/// A field or header name that holds a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `*token`, `key` and `*-key`/`*_key`/
/// `*apikey` (`X-Api-Key`), anything with `secret`, `password` or `credential` in it.
pub(super) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "key"
        || name.ends_with("authorization")
        || name.ends_with("cookie")
        || name.ends_with("token")
        || name.ends_with("-key")
        || name.ends_with("_key")
        || name.ends_with("apikey")
        || ["secret", "password", "credential"]
            .iter()
            .any(|word| name.contains(word))
}

/// A URL parameter that holds a credential: the names above, and an OAuth `code`.
fn is_secret_parameter(name: &str) -> bool {
    name.eq_ignore_ascii_case("code") || is_secret_name(name)
}

/// `text` with its credentials replaced, or `None` when it holds none.
pub(super) fn redact_text(text: &str) -> Option<String> {
    let mut spans = parameter_values(text);
    spans.extend(bearer_tokens(text));
    spans.extend(user_info(text));
    if spans.is_empty() {
        return None;
    }
    spans.sort_by_key(|span| span.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for span in spans {
        if span.start < copied {
            continue; // inside a span already replaced
        }
        out.push_str(&text[copied..span.start]);
        out.push_str(REDACTED);
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Where a value ends in a URL or a line of text. All of these are ASCII, so every span
/// starts and ends on a character boundary.
fn ends_value(byte: u8) -> bool {
    matches!(byte, b'&' | b'#' | b';' | b',' | b'"' | b'\'' | b'<' | b'>')
        || byte.is_ascii_whitespace()
}

fn run_until(bytes: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    from + bytes[from..]
        .iter()
        .take_while(|byte| !stop(**byte))
        .count()
}

/// The values of `token=`, `access_token=`, `code=`, `key=`… in URLs, query strings and
/// fragments (`#access_token=`).
fn parameter_values(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let starts_parameter = at == 0
            || matches!(bytes[at - 1], b'?' | b'&' | b';' | b'#')
            || bytes[at - 1].is_ascii_whitespace();
        if starts_parameter {
            let name_end = run_until(bytes, at, |byte| {
                !(byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'%'))
            });
            if name_end > at
                && bytes.get(name_end) == Some(&b'=')
                && is_secret_parameter(&text[at..name_end])
            {
                let value_end = run_until(bytes, name_end + 1, ends_value);
                spans.push(name_end + 1..value_end);
                at = value_end;
                continue;
            }
        }
        at += 1;
    }
    spans.retain(|span| !span.is_empty());
    spans
}

/// What follows `Bearer ` (any case) in text, such as a quoted header line.
fn bearer_tokens(text: &str) -> Vec<Range<usize>> {
    const SCHEME: &str = "bearer ";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    lower
        .match_indices(SCHEME)
        .map(|(at, _)| {
            let start = at + SCHEME.len();
            start..run_until(bytes, start, ends_value)
        })
        .filter(|span| !span.is_empty())
        .collect()
}

/// The `user:password` of `scheme://user:password@host`.
fn user_info(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    text.match_indices("://")
        .filter_map(|(at, separator)| {
            let start = at + separator.len();
            let authority_end = run_until(bytes, start, |byte| {
                matches!(byte, b'/' | b'?') || ends_value(byte)
            });
            let at_sign = text[start..authority_end].rfind('@')?;
            Some(start..start + at_sign)
        })
        .filter(|span| !span.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(value: Value) -> Value {
        Redactor::new(&[]).redact(value)
    }

    #[test]
    fn headers_as_objects_pairs_and_named_entries() {
        let redacted = redact(json!({
            "headers": {"Cookie": "sid=1", "Authorization": "Bearer a", "X-Api-Key": "k1",
                "Proxy-Authorization": "Basic b", "X-Csrf-Token": "t1", "X-Client-Secret": "s1",
                "Accept": "text/html"},
            "pairs": [["set-cookie", "sid=2"], ["authorization", "Bearer c"], ["accept", "*/*"]],
            "named": [{"name": "Cookie", "value": "sid=3"}, {"name": "Accept", "value": "x"}],
        }));
        let text = redacted.to_string();
        for secret in ["sid=", "Bearer", "Basic", "k1", "t1", "s1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(redacted["headers"]["Accept"], "text/html");
        assert_eq!(redacted["pairs"][2], json!(["accept", "*/*"]));
        assert_eq!(redacted["named"][1]["value"], "x");
    }

    #[test]
    fn parameters_in_urls_paths_and_query_strings() {
        for (text, expected) in [
            (
                "/callback?code=c1&state=s&access_token=t1",
                "/callback?code=[REDACTED]&state=s&access_token=[REDACTED]",
            ),
            ("token=t2&page=2", "token=[REDACTED]&page=2"),
            (
                "wss://h/socket/websocket?vsn=2.0.0&token=t3",
                "wss://h/socket/websocket?vsn=2.0.0&token=[REDACTED]",
            ),
            (
                "https://h/app#access_token=t4",
                "https://h/app#access_token=[REDACTED]",
            ),
            ("GET /x?key=k2 HTTP/1.1", "GET /x?key=[REDACTED] HTTP/1.1"),
            (
                "failed: Authorization: Bearer t5",
                "failed: Authorization: Bearer [REDACTED]",
            ),
            ("https://me:pw@h/x?a=1", "https://[REDACTED]@h/x?a=1"),
            (
                "/api/hello?barcode=1&unicode=2",
                "/api/hello?barcode=1&unicode=2",
            ),
        ] {
            assert_eq!(redact_text(text).as_deref().unwrap_or(text), expected);
        }
        assert_eq!(redact_text("nothing=secret here"), None);
    }

    #[test]
    fn contents_are_kept_as_sizes() {
        let redacted = redact(json!({
            "control": {"type": "start_turn", "input": [{"type": "text", "text": "my plan"}],
                "bodyBase64": "aGVsbG8=", "body": "hi", "delta": "abc", "threadId": "t"}
        }));
        let control = &redacted["control"];
        assert_eq!(control["body"], json!({"omittedBytes": 4}));
        assert_eq!(control["bodyBase64"], json!({"omittedBytes": 10}));
        assert_eq!(control["delta"], json!({"omittedBytes": 5}));
        assert!(control["input"]["omittedBytes"].as_u64().unwrap() > 7);
        assert_eq!(control["threadId"], "t");
        assert!(!redacted.to_string().contains("my plan"));
    }

    #[test]
    fn long_texts_are_cut_with_secrets_masked_first() {
        let secret = "s3cr3t-token".to_owned();
        let mut redactor = Redactor::new(std::slice::from_ref(&secret));
        // The secret straddles the cut: masking after the cut would leave "s3cr3t".
        let text = format!(
            "{}{secret}{}",
            "a".repeat(LONG_TEXT_BYTES - 6),
            "b".repeat(9000)
        );
        let key = "k".repeat(3 * LONG_TEXT_BYTES);
        let redacted = redactor.redact(json!({ "padding": text, key: 1, "short": "é" }));
        assert!(redactor.cut);
        let line = redacted.to_string();
        assert!(!line.contains("s3cr3t"), "{line}");
        assert!(line.len() < 3 * LONG_TEXT_BYTES, "{}", line.len());
        assert!(redacted["padding"].as_str().unwrap().ends_with(&format!(
            "… [cut from {} bytes]",
            text.len() + REDACTED.len() - secret.len()
        )));
        assert_eq!(redacted["short"], "é");
    }
}
