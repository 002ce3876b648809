//! JSON-RPC 2.0 as the Codex app-server speaks it: its own messages carry no `"jsonrpc"`
//! member (ours may), ids are integers, and it sends requests of its own (approvals)
//! whose ids are a separate sequence starting at 0.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A message from the app-server, classified by its members.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    Notification {
        method: String,
        params: Value,
    },
    Request {
        id: Value,
        method: String,
        params: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (JSON-RPC error {code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Standard error codes the runner sends back.
pub mod codes {
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INTERNAL_ERROR: i64 = -32603;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("app-server sent invalid JSON: {0}")]
    NotJson(String),
    #[error(
        "app-server sent a message that is not a JSON-RPC request, response or notification: {0}"
    )]
    Shape(String),
}

impl Incoming {
    pub fn parse(text: &str) -> Result<Incoming, MessageError> {
        let value = crate::json::from_str(text)
            .map_err(|error| MessageError::NotJson(error.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(MessageError::Shape(preview(text)));
        };
        let id = object.remove("id");
        let method = match object.remove("method") {
            Some(Value::String(method)) => Some(method),
            Some(_) => return Err(MessageError::Shape(preview(text))),
            None => None,
        };
        let params = object.remove("params").unwrap_or(Value::Null);
        match (id, method) {
            (Some(id), Some(method)) => Ok(Incoming::Request { id, method, params }),
            (None, Some(method)) => Ok(Incoming::Notification { method, params }),
            (Some(id), None) => {
                let outcome = if let Some(error) = object.remove("error") {
                    Err(serde_json::from_value(error)
                        .map_err(|_| MessageError::Shape(preview(text)))?)
                } else if let Some(result) = object.remove("result") {
                    Ok(result)
                } else {
                    return Err(MessageError::Shape(preview(text)));
                };
                Ok(Incoming::Response { id, outcome })
            }
            (None, None) => Err(MessageError::Shape(preview(text))),
        }
    }
}

pub fn request(id: u64, method: &str, params: &Value) -> String {
    let mut object = Map::new();
    object.insert("id".into(), json!(id));
    object.insert("method".into(), json!(method));
    if !params.is_null() {
        object.insert("params".into(), params.clone());
    }
    Value::Object(object).to_string()
}

pub fn notification(method: &str, params: Option<&Value>) -> String {
    match params {
        Some(params) => json!({"method": method, "params": params}).to_string(),
        None => json!({ "method": method }).to_string(),
    }
}

pub fn response(id: &Value, result: &Value) -> String {
    json!({"id": id, "result": result}).to_string()
}

pub fn error_response(id: &Value, error: &RpcError) -> String {
    json!({"id": id, "error": error}).to_string()
}

fn preview(text: &str) -> String {
    text.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_what_the_app_server_sends() {
        assert_eq!(
            Incoming::parse(r#"{"id":1,"result":{"userAgent":"x"}}"#).unwrap(),
            Incoming::Response {
                id: json!(1),
                outcome: Ok(json!({"userAgent": "x"}))
            }
        );
        assert_eq!(
            Incoming::parse(r#"{"error":{"code":-32600,"message":"Not initialized"},"id":1}"#)
                .unwrap(),
            Incoming::Response {
                id: json!(1),
                outcome: Err(RpcError {
                    code: -32600,
                    message: "Not initialized".into(),
                    data: None
                })
            }
        );
        assert_eq!(
            Incoming::parse(
                r#"{"method":"turn/started","params":{"threadId":"t"},"emittedAtMs":5}"#
            )
            .unwrap(),
            Incoming::Notification {
                method: "turn/started".into(),
                params: json!({"threadId": "t"})
            }
        );
        assert_eq!(
            Incoming::parse(r#"{"id":0,"method":"item/fileChange/requestApproval","params":{}}"#)
                .unwrap(),
            Incoming::Request {
                id: json!(0),
                method: "item/fileChange/requestApproval".into(),
                params: json!({})
            }
        );
    }

    #[test]
    fn rejects_garbage_with_a_preview() {
        assert!(matches!(
            Incoming::parse("{nope"),
            Err(MessageError::NotJson(_))
        ));
        for text in [
            r#"[1]"#,
            r#"{"id":1}"#,
            r#"{"params":{}}"#,
            r#"{"method":5}"#,
        ] {
            assert!(
                matches!(Incoming::parse(text), Err(MessageError::Shape(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn encodes_outgoing_messages() {
        assert_eq!(
            request(3, "thread/read", &json!({"threadId": "t"})),
            r#"{"id":3,"method":"thread/read","params":{"threadId":"t"}}"#
        );
        assert_eq!(
            notification("initialized", None),
            r#"{"method":"initialized"}"#
        );
        assert_eq!(
            response(&json!(0), &json!({"decision": "accept"})),
            r#"{"id":0,"result":{"decision":"accept"}}"#
        );
        let error = RpcError {
            code: codes::METHOD_NOT_FOUND,
            message: "no".into(),
            data: None,
        };
        assert_eq!(
            error_response(&json!(2), &error),
            r#"{"error":{"code":-32601,"message":"no"},"id":2}"#
        );
    }
}
