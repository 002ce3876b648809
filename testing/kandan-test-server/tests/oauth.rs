//! The runner's HTTP API: browser OAuth, code exchange, validation and the start target.

// The request helpers below panic on failure, like the tests that call them.
#![allow(clippy::expect_used)]

mod common;

use common::{http_client, start_server, start_with};
use kandan_test_server::{KandanTestServer, ServerConfig, TestUser};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use url::Url;

const CALLBACK: &str = "http://127.0.0.1:53999/callback";
/// RFC 7636 Appendix B: a verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PKCE: [(&str, &str); 2] = [
    ("code_challenge", CHALLENGE),
    ("code_challenge_method", "S256"),
];

fn api(server: &KandanTestServer, path: &str) -> String {
    format!("{}/api/v2/local-codex-runner{path}", server.http_url())
}

fn location(response: &Response) -> Url {
    let location = response.headers()["location"].to_str().expect("ascii");
    Url::parse(location).expect("absolute redirect")
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn exchange(server: &KandanTestServer, code: &str, redirect_uri: &str) -> Response {
    exchange_body(
        server,
        json!({"code": code, "redirect_uri": redirect_uri, "code_verifier": VERIFIER}),
    )
    .await
}

async fn exchange_body(server: &KandanTestServer, body: Value) -> Response {
    http_client()
        .post(api(server, "/oauth/token"))
        .json(&body)
        .send()
        .await
        .expect("token request")
}

/// A code for `CALLBACK`, issued for `CHALLENGE`.
async fn authorized_code(server: &KandanTestServer) -> String {
    let authorized = http_client()
        .get(api(server, "/oauth/authorize"))
        .query(&[("redirect_uri", CALLBACK), ("state", "x")])
        .query(&PKCE)
        .send()
        .await
        .expect("authorize");
    assert_eq!(authorized.status(), StatusCode::FOUND);
    query(&location(&authorized), "code").expect("code")
}

async fn validate(server: &KandanTestServer, token: &str, scope: &str) -> StatusCode {
    http_client()
        .get(format!("{}{scope}", api(server, "/oauth/validate")))
        .bearer_auth(token)
        .send()
        .await
        .expect("validate request")
        .status()
}

#[tokio::test]
async fn authorize_token_validate_round_trip() {
    let server = start_server().await;
    let http = http_client();

    let authorized = http
        .get(api(&server, "/oauth/authorize"))
        .query(&[
            ("redirect_uri", CALLBACK),
            ("state", "s t&ate"),
            ("workspace", "acme"),
            ("channel", "codex"),
        ])
        .query(&PKCE)
        .send()
        .await
        .expect("authorize");
    assert_eq!(authorized.status(), StatusCode::FOUND);
    let callback = location(&authorized);
    assert!(callback.as_str().starts_with(CALLBACK));
    assert_eq!(query(&callback, "state").as_deref(), Some("s t&ate"));
    let code = query(&callback, "code").expect("code");

    let granted = exchange(&server, &code, CALLBACK).await;
    assert_eq!(granted.status(), StatusCode::OK);
    let body: Value = granted.json().await.expect("json");
    assert_eq!(body["expires_in"], json!(3600));
    let token = body["access_token"].as_str().expect("access_token");

    assert_eq!(
        validate(&server, token, "?workspace=acme&channel=codex").await,
        StatusCode::OK
    );
    assert_eq!(validate(&server, token, "").await, StatusCode::OK);
    assert_eq!(
        validate(&server, token, "?workspace=other&channel=codex").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        validate(&server, "garbage", "").await,
        StatusCode::UNAUTHORIZED
    );
    let ok: Value = http
        .get(api(&server, "/oauth/validate"))
        .bearer_auth(token)
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(ok, json!({"ok": true}));

    // The token also opens the socket, as the first configured user.
    let mut client = common::Client::connect(&server, token).await;
    client
        .join("local_runner:r1", "1", common::runner_join_payload())
        .await;

    let target: Value = http
        .get(api(&server, "/start-target"))
        .bearer_auth(token)
        .send()
        .await
        .expect("start-target")
        .json()
        .await
        .expect("json");
    assert_eq!(
        target,
        json!({"workspace_slug": "acme", "channel_slug": "codex"})
    );

    server.revoke_token(token);
    assert_eq!(validate(&server, token, "").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_the_redirect_uri() {
    let server = start_server().await;
    let code = authorized_code(&server).await;

    let other = exchange(&server, &code, "http://127.0.0.1:1/callback").await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        other.json::<Value>().await.expect("json"),
        json!({"error": "invalid_grant"})
    );
    assert_eq!(
        exchange(&server, &code, CALLBACK).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        exchange(&server, &code, CALLBACK).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        exchange(&server, "made-up", CALLBACK).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn foreign_redirect_uris_are_refused() {
    let server = start_server().await;
    for redirect in ["https://evil.example/steal", "http://127.0.0.1/callback"] {
        let refused = http_client()
            .get(api(&server, "/oauth/authorize"))
            .query(&[("redirect_uri", redirect), ("state", "x")])
            .query(&PKCE)
            .send()
            .await
            .expect("authorize");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{redirect}");
        let message = refused.text().await.expect("text");
        assert!(message.contains("redirect_uri must be"), "{message}");
    }
    let deep_link = http_client()
        .get(api(&server, "/oauth/authorize"))
        .query(&[("redirect_uri", "linzumi://oauth/callback"), ("state", "x")])
        .query(&PKCE)
        .send()
        .await
        .expect("authorize");
    assert_eq!(deep_link.status(), StatusCode::FOUND);
    assert!(
        location(&deep_link)
            .as_str()
            .starts_with("linzumi://oauth/callback?code=")
    );
}

#[tokio::test]
async fn onboarding_targets_the_personal_workspace() {
    let config = ServerConfig {
        users: vec![TestUser {
            id: 5,
            slug: "sean".into(),
        }],
        ..ServerConfig::default()
    };
    let server = start_with(config).await;
    let authorized = http_client()
        .get(api(&server, "/oauth/authorize"))
        .query(&[
            ("redirect_uri", CALLBACK),
            ("state", "x"),
            ("onboarding", "start"),
        ])
        .query(&PKCE)
        .send()
        .await
        .expect("authorize");
    let code = query(&location(&authorized), "code").expect("code");
    let body: Value = exchange(&server, &code, CALLBACK)
        .await
        .json()
        .await
        .expect("json");
    let token = body["access_token"].as_str().expect("token");

    let target: Value = http_client()
        .get(api(&server, "/start-target"))
        .bearer_auth(token)
        .send()
        .await
        .expect("start-target")
        .json()
        .await
        .expect("json");
    assert_eq!(
        target,
        json!({"workspace_slug": "personal-sean", "channel_slug": "codex"})
    );
    let unauthenticated = http_client()
        .get(api(&server, "/start-target"))
        .send()
        .await
        .expect("start-target");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn consent_page_when_not_auto_approving() {
    let config = ServerConfig {
        auto_approve_oauth: false,
        ..ServerConfig::default()
    };
    let server = start_with(config).await;
    let page = http_client()
        .get(api(&server, "/oauth/authorize"))
        .query(&[("redirect_uri", CALLBACK), ("state", "abc")])
        .query(&PKCE)
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"<form method="post""#), "{html}");
    assert!(html.contains("Authorize</button>"), "{html}");
    assert!(
        html.contains(&format!(r#"name="code_challenge" value="{CHALLENGE}""#)),
        "the challenge travels with the form: {html}"
    );

    let approved = http_client()
        .post(api(&server, "/oauth/authorize"))
        .form(&[
            ("redirect_uri", CALLBACK),
            ("state", "abc"),
            ("user", "tester"),
            PKCE[0],
            PKCE[1],
        ])
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let callback = location(&approved);
    assert_eq!(query(&callback, "state").as_deref(), Some("abc"));
    let code = query(&callback, "code").expect("code");
    assert_eq!(
        exchange(&server, &code, CALLBACK).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_stolen_code_is_worthless_without_its_verifier() {
    let server = start_server().await;
    let code = authorized_code(&server).await;
    // RFC 7636 §4.1's alphabet, the right length, but not the verifier of this code.
    let other = "Z".repeat(43);
    for (why, body) in [
        (
            "no verifier",
            json!({"code": code, "redirect_uri": CALLBACK}),
        ),
        (
            "a wrong verifier",
            json!({"code": code, "redirect_uri": CALLBACK, "code_verifier": other}),
        ),
        (
            "the challenge itself",
            json!({"code": code, "redirect_uri": CALLBACK, "code_verifier": CHALLENGE}),
        ),
        (
            "a verifier too short",
            json!({"code": code, "redirect_uri": CALLBACK, "code_verifier": &VERIFIER[..42]}),
        ),
    ] {
        let refused = exchange_body(&server, body).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{why}");
        assert_eq!(
            refused.json::<Value>().await.expect("json"),
            json!({"error": "invalid_grant"}),
            "{why}"
        );
    }
    // The thief's attempts did not spoil it for the client that holds the verifier; the
    // code then works once only.
    let granted = exchange(&server, &code, CALLBACK).await;
    assert_eq!(granted.status(), StatusCode::OK);
    let replayed = exchange(&server, &code, CALLBACK).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        replayed.json::<Value>().await.expect("json"),
        json!({"error": "invalid_grant"})
    );
}

#[tokio::test]
async fn authorize_without_an_s256_challenge_is_refused_back_to_the_client() {
    let server = start_server().await;
    let short = "a".repeat(42);
    let bad: [&[(&str, &str)]; 4] = [
        &[],
        &[("code_challenge", CHALLENGE)],
        &[
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "plain"),
        ],
        &[
            ("code_challenge", &short),
            ("code_challenge_method", "S256"),
        ],
    ];
    for pkce in bad {
        let refused = http_client()
            .get(api(&server, "/oauth/authorize"))
            .query(&[("redirect_uri", CALLBACK), ("state", "st")])
            .query(pkce)
            .send()
            .await
            .expect("authorize");
        assert_eq!(refused.status(), StatusCode::FOUND, "{pkce:?}");
        let callback = location(&refused);
        assert!(callback.as_str().starts_with(CALLBACK), "{callback}");
        assert_eq!(
            query(&callback, "error").as_deref(),
            Some("invalid_request"),
            "{pkce:?}"
        );
        assert_eq!(query(&callback, "state").as_deref(), Some("st"));
        assert_eq!(query(&callback, "code"), None, "{pkce:?}");
    }
}
