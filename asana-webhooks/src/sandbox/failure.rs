//! The sandbox's error answers, in Asana's error format.

use serde_json::{Value, json};

/// An error answer in Asana's format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) error: Option<&'static str>,
}

impl Failure {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error: None,
        }
    }

    pub(crate) fn body(&self) -> Value {
        let mut entry = json!({
            "message": self.message,
            "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors",
        });
        if let Some(code) = self.error {
            entry["error"] = json!(code);
        }
        if self.status == 500 {
            entry["phrase"] = json!("6 sandbox squid snuggle softly");
        }
        json!({ "errors": [entry] })
    }
}
