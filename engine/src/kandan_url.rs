//! The Kandan base URL a user gives (`--kandan-url`) and the URLs derived from it.
//!
//! Users pass `ws://`, `wss://`, `http://` or `https://`; the socket needs the websocket
//! scheme and the HTTP endpoints the http one (seed `phoenix.ts` and `oauth.ts`).
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KandanUrl {
    base: Url,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KandanUrlError {
    #[error("--kandan-url is not a URL: {0}")]
    Invalid(String),
    #[error("--kandan-url must be ws://, wss://, http://, or https://")]
    Scheme,
}

/// The Phoenix serializer version the runner speaks.
pub const PHOENIX_VSN: &str = "2.0.0";

impl KandanUrl {
    pub fn parse(text: &str) -> Result<KandanUrl, KandanUrlError> {
        let base =
            Url::parse(text.trim()).map_err(|error| KandanUrlError::Invalid(error.to_string()))?;
        match base.scheme() {
            "ws" | "wss" | "http" | "https" => Ok(KandanUrl { base }),
            _ => Err(KandanUrlError::Scheme),
        }
    }

    pub fn as_str(&self) -> &str {
        self.base.as_str()
    }

    /// Whether traffic to Kandan is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.base.scheme(), "wss" | "https")
    }

    /// `<base>/<path>/websocket?token=…&vsn=2.0.0` on the websocket scheme; the base path
    /// is kept so a Kandan served under a prefix works.
    pub fn websocket_url(&self, socket_path: &str, token: &str) -> Url {
        let mut url = self.with_scheme(true);
        let path = format!(
            "{}/{}/websocket",
            url.path().trim_end_matches('/'),
            socket_path.trim_matches('/')
        );
        url.set_path(&path);
        url.set_fragment(None);
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != "token" && key != "vsn")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("token", token)
            .append_pair("vsn", PHOENIX_VSN);
        url
    }

    /// The Phoenix socket URL: `<base>/socket/websocket?token=…&vsn=2.0.0`.
    pub fn phoenix_socket_url(&self, token: &str) -> Url {
        self.websocket_url("socket", token)
    }

    /// The HTTP origin for the REST endpoints (path, query and fragment dropped, as in
    /// `kandanHttpBaseUrl`).
    pub fn http_base(&self) -> Url {
        let mut url = self.with_scheme(false);
        url.set_path("");
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// An absolute URL on the HTTP origin.
    pub fn http_endpoint(&self, path: &str) -> Url {
        let mut url = self.http_base();
        url.set_path(path);
        url
    }

    /// The forward tunnel's WebSocket (protocol §6.4), on the HTTP origin's host.
    pub fn forward_tunnel_url(&self, runner_id: &str) -> Url {
        let mut url = self.with_scheme(true);
        url.set_path("/api/v2/local-codex-runner/forward-tunnel");
        url.set_fragment(None);
        url.query_pairs_mut()
            .clear()
            .append_pair("runner_id", runner_id);
        url
    }

    pub fn host(&self) -> Option<&str> {
        self.base.host_str()
    }

    fn with_scheme(&self, websocket: bool) -> Url {
        let secure = self.is_tls();
        let scheme = match (websocket, secure) {
            (true, true) => "wss",
            (true, false) => "ws",
            (false, true) => "https",
            (false, false) => "http",
        };
        let mut url = self.base.clone();
        if url.scheme() != scheme {
            // ws<->http and wss<->https are all "special" schemes, so the switch is allowed.
            let _ = url.set_scheme(scheme);
        }
        url
    }
}

/// A URL as it may appear in logs: the `token` query parameter is replaced.
pub fn redact(url: &Url) -> String {
    let mut copy = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "token" || key == "access_token" || key == "code" {
                "REDACTED".to_owned()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if !pairs.is_empty() {
        copy.query_pairs_mut().clear().extend_pairs(pairs);
    }
    copy.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_from_each_scheme() {
        for (base, expected) in [
            (
                "ws://127.0.0.1:4160",
                "ws://127.0.0.1:4160/socket/websocket?token=t&vsn=2.0.0",
            ),
            (
                "wss://serve.kandanai.com/",
                "wss://serve.kandanai.com/socket/websocket?token=t&vsn=2.0.0",
            ),
            (
                "http://localhost:4000/kandan",
                "ws://localhost:4000/kandan/socket/websocket?token=t&vsn=2.0.0",
            ),
            (
                "https://example.com/x/",
                "wss://example.com/x/socket/websocket?token=t&vsn=2.0.0",
            ),
        ] {
            let url = KandanUrl::parse(base).unwrap().phoenix_socket_url("t");
            assert_eq!(url.as_str(), expected, "{base}");
        }
    }

    #[test]
    fn token_is_encoded_and_replaces_an_existing_one() {
        let url = KandanUrl::parse("ws://h/?token=old&team=a")
            .unwrap()
            .phoenix_socket_url("a b&c");
        assert_eq!(
            url.as_str(),
            "ws://h/socket/websocket?team=a&token=a+b%26c&vsn=2.0.0"
        );
    }

    #[test]
    fn http_base_drops_path_and_query() {
        let kandan = KandanUrl::parse("wss://serve.kandanai.com/socket?x=1#y").unwrap();
        assert_eq!(kandan.http_base().as_str(), "https://serve.kandanai.com/");
        assert_eq!(
            kandan
                .http_endpoint("/api/v2/local-codex-runner/oauth/token")
                .as_str(),
            "https://serve.kandanai.com/api/v2/local-codex-runner/oauth/token"
        );
    }

    #[test]
    fn forward_tunnel_url_is_on_the_origin() {
        let kandan = KandanUrl::parse("https://serve.kandanai.com/app?x=1").unwrap();
        assert_eq!(
            kandan.forward_tunnel_url("runner-1").as_str(),
            "wss://serve.kandanai.com/api/v2/local-codex-runner/forward-tunnel?runner_id=runner-1"
        );
    }

    #[test]
    fn rejects_other_schemes() {
        assert_eq!(
            KandanUrl::parse("ftp://x").unwrap_err().to_string(),
            "--kandan-url must be ws://, wss://, http://, or https://"
        );
        assert!(matches!(
            KandanUrl::parse("not a url"),
            Err(KandanUrlError::Invalid(_))
        ));
    }

    #[test]
    fn redaction_hides_the_token() {
        let url = KandanUrl::parse("ws://h")
            .unwrap()
            .phoenix_socket_url("secret");
        let shown = redact(&url);
        assert!(!shown.contains("secret"));
        assert!(shown.contains("token=REDACTED"));
        assert!(shown.contains("vsn=2.0.0"));
    }
}
