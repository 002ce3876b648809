//! The browser OAuth flow, token validation, the start target and the token cache against
//! the Kandan test server over real loopback sockets. The "browser" is a real HTTP client
//! that follows the authorize URL's redirect to the runner's callback.
//!
//! Some tests put a small pass-through "Kandan" in front of the test server so an endpoint
//! can answer something the test server never does (another start target, an HTTP 500).
// A failed unwrap is a failed test; helpers outside #[test] fns need the allowance too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::auth::loopback::{MISSING_CODE_PAGE, SUCCESS_PAGE};
use linzumi_engine::auth::{
    self, AUTHORIZE_PROMPT, AccessToken, ApiError, AuthScope, BrowserOpener, CACHED_TOKEN_REJECTED,
    CallbackError, FileTokenStore, LoopbackCallbackServer, LoopbackError, OAuthError, OAuthOptions,
    Reporter, ResolveError, StoredToken, TokenKey, TokenSource, TokenStore,
};
use linzumi_engine::http;
use linzumi_engine::kandan_url::KandanUrl;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use url::Url;

const WAIT: Duration = Duration::from_secs(10);

async fn server() -> KandanTestServer {
    KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap()
}

fn kandan_of(server: &KandanTestServer) -> KandanUrl {
    KandanUrl::parse(&server.ws_url()).unwrap()
}

fn api_client(kandan: &KandanUrl) -> reqwest::Client {
    http::client_for(kandan).unwrap()
}

/// What the browser saw at the end of a navigation.
#[derive(Debug)]
struct Visit {
    status: u16,
    url: Url,
    body: String,
}

/// A browser stand-in: a real HTTP client that follows redirects, and counts how often the
/// flow asked it to open a page.
#[derive(Clone)]
struct Browser {
    client: reqwest::Client,
    opens: Arc<AtomicUsize>,
    visits: mpsc::UnboundedSender<Visit>,
}

impl Browser {
    fn new() -> (Browser, mpsc::UnboundedReceiver<Visit>) {
        let client = http::client_builder(http::untrusting_tls_config().unwrap())
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap();
        let (visits, received) = mpsc::unbounded_channel();
        let browser = Browser {
            client,
            opens: Arc::new(AtomicUsize::new(0)),
            visits,
        };
        (browser, received)
    }

    async fn visit(&self, url: Url) -> Visit {
        let response = self.client.get(url).send().await.unwrap();
        Visit {
            status: response.status().as_u16(),
            url: response.url().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// Opens the authorize URL and follows it to the callback.
    fn opener(&self) -> BrowserOpener {
        let browser = self.clone();
        Arc::new(move |url: &Url| {
            browser.opens.fetch_add(1, Ordering::SeqCst);
            let (browser, url) = (browser.clone(), url.clone());
            tokio::spawn(async move {
                let visit = browser.visit(url).await;
                let _ = browser.visits.send(visit);
            });
            Ok(())
        })
    }

    fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

/// Collects what the flow reports to the person.
#[derive(Clone, Default)]
struct Messages(Arc<Mutex<Vec<String>>>);

impl Messages {
    fn reporter(&self) -> Reporter {
        let messages = Arc::clone(&self.0);
        Arc::new(move |message: &str| messages.lock().unwrap().push(message.to_owned()))
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn options(kandan: &KandanUrl, browser: &Browser, messages: &Messages) -> OAuthOptions {
    let mut options = OAuthOptions::new(kandan.clone(), api_client(kandan));
    options.open_browser = browser.opener();
    options.report = messages.reporter();
    options.timeout = WAIT;
    options
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "linzumi-oauth-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn file_store(path: &Path) -> Arc<dyn TokenStore> {
    Arc::new(FileTokenStore::new(path))
}

fn query_value(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn next_visit(visits: &mut mpsc::UnboundedReceiver<Visit>) -> Visit {
    tokio::time::timeout(WAIT, visits.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn validate(kandan: &KandanUrl, token: &AccessToken, scope: &AuthScope) -> bool {
    auth::validate_token(&api_client(kandan), kandan, token, scope)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_browser_flow_grants_a_token_that_validates_and_has_a_start_target() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, mut visits) = Browser::new();
    let messages = Messages::default();
    let options = options(&kandan, &browser, &messages);

    let granted = auth::acquire_token(&options, &AuthScope::Onboarding)
        .await
        .unwrap();

    let visit = next_visit(&mut visits).await;
    assert_eq!(visit.status, 200);
    assert_eq!(visit.body, SUCCESS_PAGE);
    assert_eq!(visit.url.path(), "/callback");
    assert_eq!(visit.url.host_str(), Some("127.0.0.1"));
    assert_eq!(browser.opens(), 1);
    assert_eq!(granted.expires_in, Some(3600));

    let reported = messages.all();
    assert_eq!(reported.len(), 1, "{reported:?}");
    let (prompt, link) = reported[0].split_once('\n').unwrap();
    assert_eq!(prompt, AUTHORIZE_PROMPT);
    let link = Url::parse(link).unwrap();
    assert_eq!(link.path(), "/api/v2/local-codex-runner/oauth/authorize");
    assert_eq!(query_value(&link, "onboarding").as_deref(), Some("start"));
    assert_eq!(
        query_value(&link, "state"),
        query_value(&visit.url, "state")
    );
    let redirect = query_value(&link, "redirect_uri").unwrap();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");

    let token = granted.access_token;
    let identity = auth::identity_from_token(token.expose()).unwrap();
    assert_eq!(identity.username.as_deref(), Some("tester"));
    assert_eq!(identity.user_id, Some(1));

    let http = api_client(&kandan);
    let target = auth::fetch_start_target(&http, &kandan, &token)
        .await
        .unwrap();
    assert_eq!(target.workspace_slug, "personal-tester");
    assert_eq!(target.channel_slug, "codex");
    assert!(validate(&kandan, &token, &target.scope()).await);
    assert!(validate(&kandan, &token, &AuthScope::Onboarding).await);
    assert!(!validate(&kandan, &token, &AuthScope::channel("acme", "codex")).await);
    server.revoke_token(token.expose());
    assert!(!validate(&kandan, &token, &target.scope()).await);
    let error = auth::fetch_start_target(&http, &kandan, &token)
        .await
        .unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert!(error.to_string().contains("(HTTP 401)"), "{error}");
    // A revoked token is refused in every scope: that tells it from one that is good,
    // but not for the channel asked about (above).
    assert!(!validate(&kandan, &token, &AuthScope::Onboarding).await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_channel_scoped_flow_asks_for_that_channel() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let scope = AuthScope::channel("acme", "codex");

    let granted = auth::acquire_token(&options(&kandan, &browser, &messages), &scope)
        .await
        .unwrap();

    let link = messages.all()[0].split_once('\n').unwrap().1.to_owned();
    assert!(link.contains("workspace=acme&channel=codex"), "{link}");
    assert!(validate(&kandan, &granted.access_token, &scope).await);
    assert!(
        !validate(
            &kandan,
            &granted.access_token,
            &AuthScope::channel("acme", "ops")
        )
        .await
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_forged_callback_with_the_wrong_state_is_refused_and_the_real_one_still_works() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, mut visits) = Browser::new();
    let messages = Messages::default();
    let mut options = options(&kandan, &browser, &messages);
    let real = browser.opener();
    let attacker = browser.clone();
    options.open_browser = Arc::new(move |url: &Url| {
        let mut forged = Url::parse(&query_value(url, "redirect_uri").unwrap()).unwrap();
        forged
            .query_pairs_mut()
            .append_pair("code", "attacker-code")
            .append_pair("state", "forged-state");
        let (attacker, real, url) = (attacker.clone(), Arc::clone(&real), url.clone());
        tokio::spawn(async move {
            // The forgery lands first; only then does the real browser come back.
            let visit = attacker.visit(forged).await;
            let _ = attacker.visits.send(visit);
            real(&url).unwrap();
        });
        Ok(())
    });

    let granted = auth::acquire_token(&options, &AuthScope::Unscoped)
        .await
        .unwrap();

    let forged = next_visit(&mut visits).await;
    assert_eq!(forged.status, 400);
    assert!(forged.body.contains("state mismatch"), "{}", forged.body);
    let genuine = next_visit(&mut visits).await;
    assert_eq!((genuine.status, genuine.body.as_str()), (200, SUCCESS_PAGE));
    assert!(validate(&kandan, &granted.access_token, &AuthScope::Unscoped).await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_replayed_callback_and_a_reused_code_are_refused() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let mut callback = LoopbackCallbackServer::start("127.0.0.1").await.unwrap();
    let authorize = callback
        .pending()
        .authorization_url(&kandan, &AuthScope::Unscoped);

    let first = browser.visit(authorize).await;
    assert_eq!((first.status, first.body.as_str()), (200, SUCCESS_PAGE));
    let code = tokio::time::timeout(WAIT, callback.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code.redirect_uri(), callback.redirect_uri());

    let replay = browser.visit(first.url.clone()).await;
    assert_eq!(replay.status, 400);
    assert_eq!(
        replay.body,
        "This local runner authorization was already completed."
    );

    let http = api_client(&kandan);
    let token = auth::exchange_code(&http, &kandan, &code).await.unwrap();
    assert!(validate(&kandan, &token.access_token, &AuthScope::Unscoped).await);
    let reused = auth::exchange_code(&http, &kandan, &code)
        .await
        .unwrap_err();
    assert_eq!(
        reused.to_string(),
        "local runner OAuth token exchange failed (HTTP 400: invalid_grant)"
    );
    server.shutdown().await;
}

/// Whoever intercepts the code on its way back (another program on the loopback port, another
/// app registered for `linzumi://`) has the code and the redirect URI, but not the verifier.
async fn steal(
    http: &reqwest::Client,
    kandan: &KandanUrl,
    code: &auth::AuthorizationCode,
) -> Vec<String> {
    let mut refusals = Vec::new();
    let guessed = auth::AuthorizationCode::new(
        code.expose(),
        code.redirect_uri(),
        auth::CodeVerifier::generate(),
    );
    let error = auth::exchange_code(http, kandan, &guessed)
        .await
        .unwrap_err();
    refusals.push(error.to_string());
    // And with no verifier at all, as a client without PKCE would send it.
    let bare = http
        .post(kandan.http_endpoint(auth::api::TOKEN_PATH))
        .json(&serde_json::json!({"code": code.expose(), "redirect_uri": code.redirect_uri()}))
        .send()
        .await
        .unwrap();
    refusals.push(format!("{} {}", bare.status(), bare.text().await.unwrap()));
    refusals
}

#[tokio::test]
async fn a_stolen_loopback_code_is_refused_without_its_pkce_verifier() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let mut callback = LoopbackCallbackServer::start("127.0.0.1").await.unwrap();
    let authorize = callback
        .pending()
        .authorization_url(&kandan, &AuthScope::Unscoped);
    assert_eq!(
        query_value(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = query_value(&authorize, "code_challenge").unwrap();
    assert_eq!(challenge, callback.pending().code_challenge());

    browser.visit(authorize).await;
    let code = tokio::time::timeout(WAIT, callback.wait())
        .await
        .unwrap()
        .unwrap();
    // Only the challenge went through the browser; the verifier is the callback's own.
    assert_eq!(code.verifier().challenge(), challenge);

    let http = api_client(&kandan);
    assert_eq!(
        steal(&http, &kandan, &code).await,
        [
            "local runner OAuth token exchange failed (HTTP 400: invalid_grant)",
            r#"400 Bad Request {"error":"invalid_grant"}"#,
        ]
    );
    // The thief did not use the code up; its owner exchanges it, once.
    let token = auth::exchange_code(&http, &kandan, &code).await.unwrap();
    assert!(validate(&kandan, &token.access_token, &AuthScope::Unscoped).await);
    let replayed = auth::exchange_code(&http, &kandan, &code)
        .await
        .unwrap_err();
    assert_eq!(
        replayed.to_string(),
        "local runner OAuth token exchange failed (HTTP 400: invalid_grant)"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_deep_link_flow_exchanges_its_code_with_its_verifier_and_a_stolen_one_is_refused() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let signin = auth::deep_link::DeepLinkSignIn::default();
    let started = signin.begin(&kandan, AuthScope::Onboarding);
    assert_eq!(
        query_value(&started.url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    // The browser is sent to linzumi://oauth/callback?code&state (not followed here).
    let authorized = api_client(&kandan)
        .get(started.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 302);
    let link = Url::parse(authorized.headers()["location"].to_str().unwrap()).unwrap();
    signin.deliver(&link).unwrap();
    let code = started.code.await.unwrap().unwrap();
    assert_eq!(
        Some(code.verifier().challenge()),
        query_value(&started.url, "code_challenge")
    );

    let http = api_client(&kandan);
    for refusal in steal(&http, &kandan, &code).await {
        assert!(refusal.contains("invalid_grant"), "{refusal}");
    }
    let token = auth::exchange_code(&http, &kandan, &code).await.unwrap();
    assert!(validate(&kandan, &token.access_token, &AuthScope::Onboarding).await);
    server.shutdown().await;
}

#[tokio::test]
async fn the_callback_server_answers_bad_requests_and_stops_when_dropped() {
    let (browser, _visits) = Browser::new();
    let callback = LoopbackCallbackServer::start("127.0.0.1").await.unwrap();
    let base = Url::parse(callback.redirect_uri()).unwrap();

    let mut no_code = base.clone();
    no_code.set_query(Some("state=abc"));
    let visit = browser.visit(no_code).await;
    assert_eq!(
        (visit.status, visit.body.as_str()),
        (400, MISSING_CODE_PAGE)
    );

    let visit = browser.visit(base.join("/favicon.ico").unwrap()).await;
    assert_eq!(visit.status, 404);
    assert!(!callback.pending().is_completed());

    let addr = callback.local_addr();
    drop(callback);
    // The listener goes away with the server: a connection is refused, not left hanging.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the callback port still accepts connections"
    );
}

#[tokio::test]
async fn a_callback_host_that_is_not_on_this_computer_is_reported() {
    // 203.0.113.0/24 is reserved for documentation: no interface has it.
    let error = LoopbackCallbackServer::start("203.0.113.7")
        .await
        .unwrap_err();
    assert!(matches!(error, LoopbackError::Bind { .. }));
    let message = error.to_string();
    assert!(
        message.starts_with("could not listen for the OAuth callback on 203.0.113.7: "),
        "{message}"
    );
    assert!(message.contains("--oauth-callback-host"), "{message}");
}

#[tokio::test]
async fn a_denied_authorization_ends_the_flow() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, mut visits) = Browser::new();
    let messages = Messages::default();
    let mut options = options(&kandan, &browser, &messages);
    let denier = browser.clone();
    options.open_browser = Arc::new(move |url: &Url| {
        let mut denied = Url::parse(&query_value(url, "redirect_uri").unwrap()).unwrap();
        denied
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &query_value(url, "state").unwrap());
        let denier = denier.clone();
        tokio::spawn(async move {
            let visit = denier.visit(denied).await;
            let _ = denier.visits.send(visit);
        });
        Ok(())
    });

    let error = auth::acquire_token(&options, &AuthScope::Unscoped)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OAuthError::Callback(CallbackError::Denied(reason)) if reason == "access_denied"),
        "{error:?}"
    );
    assert_eq!(next_visit(&mut visits).await.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn the_flow_times_out_when_nobody_comes_back() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let mut options = options(&kandan, &browser, &messages);
    options.open_browser = Arc::new(|_: &Url| Err("no display".to_owned()));
    options.timeout = Duration::from_millis(100);

    let error = auth::acquire_token(&options, &AuthScope::Unscoped)
        .await
        .unwrap_err();
    assert!(matches!(error, OAuthError::Timeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("was not completed within"),
        "{error}"
    );
    let reported = messages.all();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(reported[0].starts_with(AUTHORIZE_PROMPT));
    assert_eq!(
        reported[1],
        "Could not open a browser (no display); open the link above yourself."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_explicit_token_is_used_as_is() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("explicit");
    let store = file_store(&dir.join("auth.json"));
    let explicit = AccessToken::new("whatever-the-user-passed");

    let resolved = auth::resolve_token(
        &options(&kandan, &browser, &messages),
        &store,
        Some(&explicit),
        &AuthScope::channel("acme", "codex"),
    )
    .await
    .unwrap();

    assert_eq!(resolved.token, explicit);
    assert_eq!(resolved.source, TokenSource::Explicit);
    assert_eq!(browser.opens(), 0);
    assert!(!dir.join("auth.json").exists());
    std::fs::remove_dir_all(dir).unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_valid_cached_token_is_reused_without_oauth() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("cached");
    let store = file_store(&dir.join("auth.json"));
    let scope = AuthScope::channel("acme", "codex");
    let cached = AccessToken::new(server.issue_token("tester", Some(("acme", "codex"))));
    store
        .save(
            &TokenKey::new(&kandan, scope.clone()),
            &StoredToken::new(cached.clone(), None),
        )
        .unwrap();

    let resolved =
        auth::resolve_token(&options(&kandan, &browser, &messages), &store, None, &scope)
            .await
            .unwrap();

    assert_eq!(resolved.token, cached);
    assert_eq!(resolved.source, TokenSource::Cached);
    assert_eq!(browser.opens(), 0, "the browser must not be opened");
    assert!(messages.all().is_empty(), "{:?}", messages.all());
    std::fs::remove_dir_all(dir).unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_revoked_cached_token_starts_oauth_and_the_new_token_is_stored_privately() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("revoked");
    let path = dir.join("kandan").join("auth.json");
    let store = file_store(&path);
    let scope = AuthScope::channel("acme", "codex");
    let key = TokenKey::new(&kandan, scope.clone());
    let stale = server.issue_token("tester", Some(("acme", "codex")));
    store
        .save(&key, &StoredToken::new(AccessToken::new(&stale), None))
        .unwrap();
    server.revoke_token(&stale);

    let resolved =
        auth::resolve_token(&options(&kandan, &browser, &messages), &store, None, &scope)
            .await
            .unwrap();

    assert_eq!(resolved.source, TokenSource::OAuth);
    assert_ne!(resolved.token.expose(), stale);
    assert_eq!(browser.opens(), 1);
    let reported = messages.all();
    assert_eq!(reported[0], CACHED_TOKEN_REJECTED);
    assert!(reported[1].starts_with(AUTHORIZE_PROMPT), "{reported:?}");
    assert!(validate(&kandan, &resolved.token, &scope).await);

    let saved = store.load(&key).unwrap().unwrap();
    assert_eq!(saved.access_token, resolved.token);
    assert!(saved.expires_at.is_some());
    let contents = std::fs::read_to_string(&path).unwrap();
    assert!(!contents.contains(&stale), "the rejected token is gone");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            format!("{:o}", mode & 0o777)
        };
        assert_eq!(mode(&path), "600", "auth.json must be private");
        assert_eq!(mode(path.parent().unwrap()), "700", "its new folder too");
    }
    std::fs::remove_dir_all(dir).unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_cache_file_is_moved_aside_and_oauth_runs() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("corrupt");
    let path = dir.join("auth.json");
    std::fs::write(&path, "{\"version\": 1, \"tokens\": [ truncated").unwrap();
    let store = file_store(&path);

    let resolved = auth::resolve_token(
        &options(&kandan, &browser, &messages),
        &store,
        None,
        &AuthScope::Unscoped,
    )
    .await
    .unwrap();

    assert_eq!(resolved.source, TokenSource::OAuth);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let aside: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with("auth.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{names:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join(aside[0])).unwrap(),
        "{\"version\": 1, \"tokens\": [ truncated"
    );
    let key = TokenKey::new(&kandan, AuthScope::Unscoped);
    assert_eq!(
        store.load(&key).unwrap().unwrap().access_token,
        resolved.token
    );
    std::fs::remove_dir_all(dir).unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn start_keeps_an_onboarding_token_that_fits_its_target() {
    let server = server().await;
    let kandan = kandan_of(&server);
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("start-fits");
    let store = file_store(&dir.join("auth.json"));

    let start = auth::resolve_start_token(&options(&kandan, &browser, &messages), &store, None)
        .await
        .unwrap();

    assert_eq!(start.target.workspace_slug, "personal-tester");
    assert_eq!(start.token.source, TokenSource::OAuth);
    assert_eq!(browser.opens(), 1);
    let onboarding = store
        .load(&TokenKey::new(&kandan, AuthScope::Onboarding))
        .unwrap()
        .unwrap();
    assert_eq!(onboarding.access_token, start.token.token);
    std::fs::remove_dir_all(dir).unwrap();
    server.shutdown().await;
}

/// A "Kandan" that passes every request through to the test server, except for paths
/// given a canned answer.
struct FakeKandan {
    url: KandanUrl,
    canned: Arc<Mutex<HashMap<String, (u16, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKandan {
    async fn start(backend: &KandanTestServer) -> FakeKandan {
        let backend = backend.http_url();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let canned: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let forward = api_client(&KandanUrl::parse(&backend).unwrap());
        let answers = Arc::clone(&canned);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (backend, forward, answers) =
                    (backend.clone(), forward.clone(), Arc::clone(&answers));
                let service = hyper::service::service_fn(move |request| {
                    let (backend, forward, answers) =
                        (backend.clone(), forward.clone(), Arc::clone(&answers));
                    async move {
                        Ok::<_, Infallible>(
                            pass_through(request, &backend, &forward, &answers).await,
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        FakeKandan {
            url: KandanUrl::parse(&format!("ws://{addr}")).unwrap(),
            canned,
            task,
        }
    }

    fn answer(&self, path: &str, status: u16, body: &str) {
        self.canned
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_owned()));
    }
}

impl Drop for FakeKandan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pass_through(
    request: Request<Incoming>,
    backend: &str,
    forward: &reqwest::Client,
    canned: &Mutex<HashMap<String, (u16, String)>>,
) -> Response<Full<Bytes>> {
    let answer = canned.lock().unwrap().get(request.uri().path()).cloned();
    if let Some((status, body)) = answer {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        if (300..400).contains(&status) {
            response
                .headers_mut()
                .insert("location", "https://kandan.example/".parse().unwrap());
        }
        return response;
    }
    let target = format!("{backend}{}", request.uri());
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut outgoing = forward.request(method, target).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(value) = headers.get(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answered = outgoing.send().await.unwrap();
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = answered.status();
    for name in ["location", "content-type"] {
        if let Some(value) = answered.headers().get(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    *response.body_mut() = Full::new(answered.bytes().await.unwrap());
    response
}

#[tokio::test]
async fn start_rescopes_to_its_target_with_a_second_authorization() {
    let server = server().await;
    let fake = FakeKandan::start(&server).await;
    fake.answer(
        "/api/v2/local-codex-runner/start-target",
        200,
        r#"{"workspace_slug":"acme","channel_slug":"codex"}"#,
    );
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("start-rescope");
    let store = file_store(&dir.join("auth.json"));

    let start = auth::resolve_start_token(&options(&fake.url, &browser, &messages), &store, None)
        .await
        .unwrap();

    assert_eq!(
        (
            start.target.workspace_slug.as_str(),
            start.target.channel_slug.as_str()
        ),
        ("acme", "codex")
    );
    assert_eq!(start.token.source, TokenSource::OAuth);
    assert_eq!(browser.opens(), 2, "onboarding, then the target's channel");
    let scope = AuthScope::channel("acme", "codex");
    assert!(validate(&fake.url, &start.token.token, &scope).await);
    let scoped = store
        .load(&TokenKey::new(&fake.url, scope))
        .unwrap()
        .unwrap();
    assert_eq!(scoped.access_token, start.token.token);
    assert!(
        store
            .load(&TokenKey::new(&fake.url, AuthScope::Onboarding))
            .unwrap()
            .is_some()
    );
    std::fs::remove_dir_all(dir).unwrap();
    drop(fake);
    server.shutdown().await;
}

#[tokio::test]
async fn start_refuses_an_explicit_token_for_another_channel() {
    let server = server().await;
    let fake = FakeKandan::start(&server).await;
    fake.answer(
        "/api/v2/local-codex-runner/start-target",
        200,
        r#"{"workspace_slug":"acme","channel_slug":"codex"}"#,
    );
    let (browser, _visits) = Browser::new();
    let messages = Messages::default();
    let dir = temp_dir("start-explicit");
    let store = file_store(&dir.join("auth.json"));
    let explicit = AccessToken::new(server.issue_token("tester", Some(("other", "chan"))));

    let error = auth::resolve_start_token(
        &options(&fake.url, &browser, &messages),
        &store,
        Some(&explicit),
    )
    .await
    .unwrap_err();

    assert!(matches!(error, ResolveError::NotScoped { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "provided local runner token is not scoped to acme/codex"
    );
    assert!(!error.to_string().contains(explicit.expose()));
    assert_eq!(browser.opens(), 0);
    std::fs::remove_dir_all(dir).unwrap();
    drop(fake);
    server.shutdown().await;
}

#[tokio::test]
async fn unexpected_answers_are_errors_with_their_status() {
    let server = server().await;
    let fake = FakeKandan::start(&server).await;
    let http = api_client(&fake.url);
    let token = AccessToken::new(server.issue_token("tester", None));

    fake.answer("/api/v2/local-codex-runner/oauth/validate", 500, "boom");
    let error = auth::validate_token(&http, &fake.url, &token, &AuthScope::Unscoped)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "local runner auth validation failed with HTTP 500"
    );

    fake.answer("/api/v2/local-codex-runner/oauth/validate", 301, "");
    let error = auth::validate_token(&http, &fake.url, &token, &AuthScope::Unscoped)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "local runner auth validation failed with HTTP 301 redirecting to \
         https://kandan.example/; use that address in --kandan-url"
    );

    fake.answer(
        "/api/v2/local-codex-runner/oauth/validate",
        200,
        r#"{"ok":false}"#,
    );
    assert!(
        !auth::validate_token(&http, &fake.url, &token, &AuthScope::Unscoped)
            .await
            .unwrap()
    );

    fake.answer(
        "/api/v2/local-codex-runner/oauth/token",
        200,
        r#"{"token_type":"Bearer"}"#,
    );
    let code = auth::AuthorizationCode::new(
        "c",
        "http://127.0.0.1:1/callback",
        auth::CodeVerifier::generate(),
    );
    let error = auth::exchange_code(&http, &fake.url, &code)
        .await
        .unwrap_err();
    assert_eq!(error, ApiError::MissingAccessToken);
    assert_eq!(
        error.to_string(),
        "local runner OAuth token response did not include access_token"
    );

    fake.answer(
        "/api/v2/local-codex-runner/start-target",
        200,
        r#"{"workspace_slug":"a"}"#,
    );
    let error = auth::fetch_start_target(&http, &fake.url, &token)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("lacks workspace_slug or channel_slug")
    );
    drop(fake);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_kandan_is_named_without_the_token() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kandan = KandanUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
    let token = AccessToken::new("secret-token-value");
    let error = auth::validate_token(
        &api_client(&kandan),
        &kandan,
        &token,
        &AuthScope::channel("acme", "codex"),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "could not reach Kandan at http://127.0.0.1:{port}/api/v2/local-codex-runner/oauth/validate"
        )),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}
