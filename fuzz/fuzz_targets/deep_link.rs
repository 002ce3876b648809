//! The desktop's deep-link sign-in (`auth::deep_link`): any sequence of sign-ins started
//! and `linzumi://` links delivered, each input line one step. `B` starts a sign-in; any
//! other line is a link, where `{state}` stands for the state of the sign-in in flight
//! and `{done}` for that of the last completed one, so forged, replayed, denied and right
//! links all come up.
//!
//! Properties: nothing panics; a link completes a sign-in only if it is the callback URL
//! with the state in flight and a non-blank code, and the waiter gets exactly that code
//! with the PKCE verifier whose challenge the sign-in's URL carried;
//! without a sign-in in flight nothing completes; a refused link leaves the sign-in in
//! flight usable; a refusal never shows the link's query or fragment (they hold the code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use linzumi_engine::auth::AuthScope;
use linzumi_engine::auth::deep_link::{DeepLinkSignIn, LinkRefused, Started};
use linzumi_engine::kandan_url::KandanUrl;
use url::Url;

struct Flight {
    started: Started,
    state: String,
    challenge: String,
}

fn param_of(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kandan) = KandanUrl::parse("ws://127.0.0.1:4160") else {
        return;
    };
    let signin = DeepLinkSignIn::default();
    let mut flight: Option<Flight> = None;
    let mut done = String::new();
    for line in text.lines().take(64) {
        if line == "B" {
            let started = signin.begin(&kandan, AuthScope::Onboarding);
            let state = param_of(&started.url, "state").expect("the authorize URL carries a state");
            let challenge =
                param_of(&started.url, "code_challenge").expect("the authorize URL carries PKCE");
            assert_eq!(
                param_of(&started.url, "code_challenge_method").as_deref(),
                Some("S256")
            );
            flight = Some(Flight {
                started,
                state,
                challenge,
            });
            continue;
        }
        let current = flight.as_ref().map_or("", |flight| flight.state.as_str());
        let Ok(link) = Url::parse(&line.replace("{state}", current).replace("{done}", &done))
        else {
            continue;
        };
        let outcome = signin.deliver(&link);
        let callback = link.scheme() == "linzumi"
            && link.host_str() == Some("oauth")
            && link.path() == "/callback";
        let param = |name: &str| {
            link.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        match &outcome {
            Ok(()) | Err(LinkRefused::Denied(_)) => {
                let mut ended = flight.take().expect("a link completed no sign-in");
                assert!(callback, "{link} is not the callback URL");
                assert_eq!(param("state").as_deref(), Some(ended.state.as_str()));
                let delivered = ended
                    .started
                    .code
                    .try_recv()
                    .expect("the waiter hears the outcome");
                match (&outcome, delivered) {
                    (Ok(()), Ok(code)) => {
                        assert!(!code.expose().trim().is_empty());
                        assert_eq!(Some(code.expose()), param("code").as_deref());
                        assert_eq!(code.verifier().challenge(), ended.challenge);
                    }
                    (Err(sent), Err(heard)) => assert_eq!(sent, &heard),
                    (sent, heard) => panic!("returned {sent:?}, the waiter heard {heard:?}"),
                }
                done = ended.state;
            }
            Err(refused) => {
                if let Some(flight) = &mut flight {
                    assert!(
                        flight.started.code.try_recv().is_err(),
                        "a refused link ({refused}) ended the sign-in"
                    );
                }
                // The only refusal that shows the link shows it without query or
                // fragment (a path cannot hold a bare `?` or `#`).
                if let LinkRefused::NotASignInLink(shown) = refused {
                    assert!(!shown.contains(['?', '#']), "{shown} shows the query");
                }
            }
        }
    }
});
