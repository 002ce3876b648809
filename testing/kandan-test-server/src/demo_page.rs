//! `GET /demo`: one self-contained page (inline CSS and JS, nothing fetched from elsewhere) that
//! shows the demo channel's threads as a live chat. It follows
//! `/__admin/chat/{workspace}/{channel}/stream` and posts replies, approvals and denials as the
//! demo user through `/__admin/chat/{workspace}/{channel}/messages`, with the admin key the
//! page itself was opened with (the route needs it, see [`crate::guard`]). The page's stable
//! selectors are listed in the crate README.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::DemoConfig;
use crate::guard::{ADMIN_KEY_HEADER, ADMIN_KEY_PARAM, AdminKey};
use crate::html::escape;
use crate::server::ServerCore;

const TEMPLATE: &str = include_str!("demo_page.html");

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new().route("/demo", get(page))
}

async fn page(State(core): State<Arc<ServerCore>>) -> Response {
    let key = core.admin_key.as_ref().map(AdminKey::expose);
    match &core.demo {
        // The URL holds the key: keep it out of caches and of the Referer of links followed.
        Some(demo) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            Html(render(demo, key)),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no demo channel: start the server with --demo WORKSPACE/CHANNEL\n",
        )
            .into_response(),
    }
}

/// The page with the demo's channel and user, and the admin key its own requests carry
/// (`null` for a server without one), filled in.
fn render(demo: &DemoConfig, key: Option<&str>) -> String {
    let config = json!({
        "workspace": demo.workspace,
        "channel": demo.channel,
        "user": demo.user_slug,
        "key": key,
        "keyHeader": ADMIN_KEY_HEADER,
        "keyParam": ADMIN_KEY_PARAM,
    });
    let title = format!("#{} · {}", demo.channel, demo.workspace);
    TEMPLATE
        .replace("{{TITLE}}", &escape(&title))
        .replace("{{CONFIG_JSON}}", &script_safe_json(&config.to_string()))
}

/// JSON that cannot end the `<script>` element it sits in, nor open a comment there.
fn script_safe_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_title_are_escaped() {
        let page = render(
            &DemoConfig {
                workspace: "acme".into(),
                channel: "</script><b>x".into(),
                user_slug: "sean".into(),
            },
            Some("k</script>"),
        );
        assert!(page.contains(r#""key":"k\u003c/script\u003e""#));
        assert!(page.contains(r#""channel":"\u003c/script\u003e\u003cb\u003ex""#));
        assert!(page.contains("<title>#&lt;/script&gt;&lt;b&gt;x · acme"));
        assert!(!page.contains("</script><b>"));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}
