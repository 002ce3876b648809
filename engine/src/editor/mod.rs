//! The local code-server editor.
pub mod runtime;
