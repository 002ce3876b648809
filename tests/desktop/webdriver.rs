//! The few W3C WebDriver calls the end-to-end test makes, over plain HTTP to tauri-driver.
//! A crate like fantoccini would do, but its only transports pull in a second TLS stack
//! (aws-lc-sys, a C build) for what is six JSON requests to 127.0.0.1.
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// An HTTP client on the engine's TLS set-up (reqwest is built without a default
/// crypto provider); `follow` says whether it follows redirects.
pub fn http_client(follow: bool) -> reqwest::Client {
    let tls = linzumi_engine::tls::client_config(None).unwrap();
    let redirects = if follow {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    linzumi_engine::http::client_builder(tls)
        .redirect(redirects)
        .build()
        .unwrap()
}

/// The key W3C WebDriver uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct WebDriver {
    http: reqwest::Client,
    session: String,
    base: String,
}

impl WebDriver {
    /// Opens a session: tauri-driver starts `application` under WebKitWebDriver.
    pub async fn start(port: u16, application: &Path) -> WebDriver {
        let http = http_client(true);
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application},
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("tauri-driver opened no session: {response}"))
            .to_owned();
        WebDriver {
            http,
            session,
            base,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err((error, message)) => panic!("WebDriver {path}: {error}: {message}"),
        }
    }

    /// A WebDriver command; its error name and message when it fails.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, Value)> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        match response["value"]["error"].as_str() {
            Some(error) => Err((error.to_owned(), response["value"]["message"].clone())),
            None => Ok(response["value"].clone()),
        }
    }

    /// Runs `script` (a function body; a returned promise is awaited) in the window.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns something other than null or false.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.execute(script, args.clone()).await;
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `selector`; the error when it is not there (or
    /// was replaced before the click, as a re-render does).
    pub async fn try_click(&self, selector: &str) -> Result<(), (String, Value)> {
        let element = self
            .try_call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await?;
        let id = element[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {element}"))
            .to_owned();
        self.try_call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self
            .call(reqwest::Method::GET, "/screenshot", None)
            .await
            .as_str()
            .unwrap()
            .to_owned();
        base64::engine::general_purpose::STANDARD
            .decode(png)
            .unwrap()
    }

    /// Ends the session, which closes the app.
    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}
