//! The web addresses the desktop opens in the browser. Kandan's routes are designed in
//! docs/protocol.md §6.1 (previews) and §9 (the channel page).
use linzumi_engine::kandan_url::KandanUrl;
use url::Url;

/// Kandan's link to a forwarded port's preview: it opens the port's isolated origin.
pub fn preview(kandan: &KandanUrl, runner_id: &str, port: u16) -> Url {
    with_segments(
        kandan,
        &[
            "local-runners",
            runner_id,
            "ports",
            &port.to_string(),
            "preview",
        ],
    )
}

/// The Kandan channel a folder is shared into.
pub fn channel(kandan: &KandanUrl, workspace: &str, channel: &str) -> Url {
    with_segments(kandan, &[workspace, "channels", channel])
}

fn with_segments(kandan: &KandanUrl, segments: &[&str]) -> Url {
    let mut url = kandan.http_base();
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kandan() -> KandanUrl {
        KandanUrl::parse("wss://serve.kandan.test/socket?x=1").unwrap()
    }

    #[test]
    fn preview_links_use_kandans_http_origin() {
        assert_eq!(
            preview(&kandan(), "desktop-1", 5173).as_str(),
            "https://serve.kandan.test/local-runners/desktop-1/ports/5173/preview"
        );
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(
            channel(&kandan(), "acme", "a/b?c").as_str(),
            "https://serve.kandan.test/acme/channels/a%2Fb%3Fc"
        );
    }
}
