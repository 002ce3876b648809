//! Browser sign-in that comes back through the `linzumi://oauth/callback` deep link.
//!
//! One authorization is in flight at a time. A link that arrives when none is (an
//! unsolicited link), with the wrong `state` (a forged one), or after the authorization
//! completed (a replayed one) is refused with a message the window shows; a forged link
//! does not spoil the real authorization, which still completes with the right link.
//!
//! The desktop app routes its links here; it lives in the engine, with the rest of
//! OAuth, so that it is tested and fuzzed without a GUI.
use std::sync::Mutex;

use super::pending::DEEP_LINK_REDIRECT_URI;
use super::{AuthScope, AuthorizationCode, CallbackError, PendingAuthorization};
use crate::kandan_url::KandanUrl;
use tokio::sync::oneshot;
use url::Url;

/// Why a deep link was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    #[error("Ignored a sign-in link: no sign-in was started from this app.")]
    Unsolicited,
    #[error(
        "Refused a sign-in link that does not match the sign-in in progress (its state is wrong)."
    )]
    Forged,
    #[error("Ignored a sign-in link that was already used.")]
    Replayed,
    #[error("Kandan did not authorize Linzumi: {0}")]
    Denied(String),
    #[error("Ignored a link this app does not handle: {0}")]
    NotASignInLink(String),
    #[error("Refused a sign-in link without a code.")]
    MissingCode,
    #[error("Ignored a sign-in link for a sign-in that was canceled.")]
    Canceled,
}

struct InFlight {
    pending: PendingAuthorization,
    done: Option<oneshot::Sender<Result<AuthorizationCode, LinkRefused>>>,
}

#[derive(Default)]
pub struct DeepLinkSignIn {
    in_flight: Mutex<Option<InFlight>>,
    /// The state of the last completed authorization, to tell a replay from a forgery.
    completed_state: Mutex<Option<String>>,
    /// The state of the last canceled authorization: its link comes too late.
    canceled_state: Mutex<Option<String>>,
}

/// A started sign-in: open `url` in the browser and await `code`.
pub struct Started {
    pub url: Url,
    pub code: oneshot::Receiver<Result<AuthorizationCode, LinkRefused>>,
}

impl DeepLinkSignIn {
    /// Starts an authorization for `scope`, replacing any in flight (its waiter gets
    /// nothing and ends).
    pub fn begin(&self, kandan: &KandanUrl, scope: AuthScope) -> Started {
        let pending = PendingAuthorization::for_deep_link();
        let url = pending.authorization_url(kandan, &scope);
        let (done, code) = oneshot::channel();
        if let Ok(mut in_flight) = self.in_flight.lock() {
            *in_flight = Some(InFlight {
                pending,
                done: Some(done),
            });
        }
        Started { url, code }
    }

    /// Gives up the authorization in flight (the person canceled, or it timed out): its
    /// waiter ends with nothing, and its link, if the browser still sends it, is refused.
    /// Returns whether one was in flight.
    pub fn cancel(&self) -> bool {
        let flight = self
            .in_flight
            .lock()
            .ok()
            .and_then(|mut in_flight| in_flight.take());
        let Some(flight) = flight else {
            return false;
        };
        if let Ok(mut canceled) = self.canceled_state.lock() {
            *canceled = Some(flight.pending.state().to_owned());
        }
        true
    }

    /// Whether an authorization is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
            .lock()
            .is_ok_and(|in_flight| in_flight.is_some())
    }

    /// Hands a `linzumi://` link to the authorization in flight.
    pub fn deliver(&self, link: &Url) -> Result<(), LinkRefused> {
        if !is_callback(link) {
            return Err(LinkRefused::NotASignInLink(redacted(link)));
        }
        let mut in_flight = self
            .in_flight
            .lock()
            .map_err(|_| LinkRefused::Unsolicited)?;
        let Some(flight) = in_flight.as_mut() else {
            return Err(self.without_flight(link));
        };
        let result = match flight.pending.complete_url(link) {
            Ok(code) => Ok(code),
            Err(CallbackError::StateMismatch) => return Err(LinkRefused::Forged),
            Err(CallbackError::MissingCode) => return Err(LinkRefused::MissingCode),
            Err(CallbackError::AlreadyCompleted) => return Err(LinkRefused::Replayed),
            Err(CallbackError::Denied(reason)) => Err(LinkRefused::Denied(reason)),
        };
        let flight = in_flight.take();
        if let Some(mut flight) = flight {
            if let Ok(mut completed) = self.completed_state.lock() {
                *completed = Some(flight.pending.state().to_owned());
            }
            if let Some(done) = flight.done.take() {
                let _ = done.send(result.clone());
            }
        }
        result.map(|_| ())
    }

    fn without_flight(&self, link: &Url) -> LinkRefused {
        let state = link
            .query_pairs()
            .find(|(key, _)| key == "state")
            .map(|(_, value)| value.into_owned());
        let remembered = |slot: &Mutex<Option<String>>| slot.lock().ok().and_then(|s| s.clone());
        match state {
            Some(state) if remembered(&self.completed_state).as_ref() == Some(&state) => {
                LinkRefused::Replayed
            }
            Some(state) if remembered(&self.canceled_state).as_ref() == Some(&state) => {
                LinkRefused::Canceled
            }
            _ => LinkRefused::Unsolicited,
        }
    }
}

fn is_callback(link: &Url) -> bool {
    link.as_str().starts_with(DEEP_LINK_REDIRECT_URI)
        && matches!(
            link.as_str()[DEEP_LINK_REDIRECT_URI.len()..].chars().next(),
            None | Some('?')
        )
}

/// A link without its query (which holds the code) or fragment, for messages.
fn redacted(link: &Url) -> String {
    let mut link = link.clone();
    link.set_query(None);
    link.set_fragment(None);
    link.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kandan() -> KandanUrl {
        KandanUrl::parse("ws://127.0.0.1:4160").unwrap()
    }

    fn link(query: &str) -> Url {
        Url::parse(&format!("linzumi://oauth/callback?{query}")).unwrap()
    }

    fn param(url: &Url, name: &str) -> String {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .unwrap()
            .1
            .into_owned()
    }

    fn state_of(url: &Url) -> String {
        param(url, "state")
    }

    #[tokio::test]
    async fn the_right_link_completes_the_sign_in_once() {
        let signin = DeepLinkSignIn::default();
        let started = signin.begin(&kandan(), AuthScope::Onboarding);
        assert!(
            started
                .url
                .as_str()
                .contains("redirect_uri=linzumi%3A%2F%2Foauth%2Fcallback")
        );
        let state = state_of(&started.url);
        // A forged link first: refused, and the real one still works.
        assert_eq!(
            signin.deliver(&link("code=evil&state=forged")),
            Err(LinkRefused::Forged)
        );
        signin
            .deliver(&link(&format!("code=c1&state={state}")))
            .unwrap();
        let code = started.code.await.unwrap().unwrap();
        assert_eq!(code.expose(), "c1");
        assert_eq!(code.redirect_uri(), DEEP_LINK_REDIRECT_URI);
        // The exchange will send the verifier whose challenge the browser carried.
        assert_eq!(param(&started.url, "code_challenge_method"), "S256");
        assert_eq!(
            code.verifier().challenge(),
            param(&started.url, "code_challenge")
        );
        assert_eq!(
            signin.deliver(&link(&format!("code=c1&state={state}"))),
            Err(LinkRefused::Replayed)
        );
    }

    #[test]
    fn links_without_a_sign_in_are_refused() {
        let signin = DeepLinkSignIn::default();
        assert_eq!(
            signin.deliver(&link("code=c&state=s")),
            Err(LinkRefused::Unsolicited)
        );
        let other = Url::parse("linzumi://share?folder=/tmp").unwrap();
        assert_eq!(
            signin.deliver(&other),
            Err(LinkRefused::NotASignInLink("linzumi://share".into()))
        );
        // Found by fuzzing: the fragment was shown, and may repeat the query.
        let fragment = Url::parse("linzumi://oack?code=c2#x?code=c2&state=s").unwrap();
        assert_eq!(
            signin.deliver(&fragment),
            Err(LinkRefused::NotASignInLink("linzumi://oack".into()))
        );
        let lookalike = Url::parse("linzumi://oauth/callbackevil?code=c&state=s").unwrap();
        assert!(matches!(
            signin.deliver(&lookalike),
            Err(LinkRefused::NotASignInLink(_))
        ));
    }

    #[tokio::test]
    async fn a_denied_authorization_reaches_the_waiter() {
        let signin = DeepLinkSignIn::default();
        let started = signin.begin(&kandan(), AuthScope::Unscoped);
        let state = state_of(&started.url);
        assert_eq!(
            signin.deliver(&link(&format!("error=access_denied&state={state}"))),
            Err(LinkRefused::Denied("access_denied".into()))
        );
        assert_eq!(
            started.code.await.unwrap().unwrap_err(),
            LinkRefused::Denied("access_denied".into())
        );
    }

    /// Canceled (or timed out): the waiter ends, and the link the browser sends later is
    /// refused, so a sign-in the person gave up on cannot complete behind their back.
    #[tokio::test]
    async fn a_canceled_sign_in_refuses_its_late_link() {
        let signin = DeepLinkSignIn::default();
        assert!(!signin.cancel(), "nothing in flight");
        let started = signin.begin(&kandan(), AuthScope::Onboarding);
        let state = state_of(&started.url);
        assert!(signin.in_flight());
        assert!(signin.cancel());
        assert!(!signin.in_flight());
        assert!(started.code.await.is_err(), "the waiter ends with nothing");
        assert_eq!(
            signin.deliver(&link(&format!("code=late&state={state}"))),
            Err(LinkRefused::Canceled)
        );
        // A new sign-in is not spoiled by the old link.
        let again = signin.begin(&kandan(), AuthScope::Onboarding);
        assert_eq!(
            signin.deliver(&link(&format!("code=late&state={state}"))),
            Err(LinkRefused::Forged)
        );
        let fresh = state_of(&again.url);
        signin
            .deliver(&link(&format!("code=c&state={fresh}")))
            .unwrap();
        assert_eq!(again.code.await.unwrap().unwrap().expose(), "c");
    }
}
