//! The Kandan sign-in: whether the owner is signed in, whether Kandan ended that session
//! (a 401/403 is not "offline": signing in again is the only way back), and a sign-in
//! in progress in the browser ("Waiting for your browser…"), which ends on success,
//! failure, cancel or a timeout, each with its own message.
//!
//! Pure: the shell opens the browser, waits for the link and reports how it ended; times
//! are passed in.
use serde::Serialize;

use crate::folder_state::ActivityLevel;
use crate::notices::NewNotice;
use crate::problem::NextStep;
use crate::token_store::TokenStorage;

/// How long the browser has to come back.
pub const SIGN_IN_TIMEOUT_MS: u64 = 5 * 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Session {
    #[default]
    SignedOut,
    SignedIn {
        user: Option<String>,
    },
    /// Kandan refused the saved sign-in (revoked or expired).
    Ended {
        user: Option<String>,
    },
}

/// A sign-in waiting for the browser to come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    #[serde(skip)]
    pub attempt: u64,
    /// Kandan's authorization page, for "Copy link" (a browser on another profile).
    pub url: String,
    pub started_at: u64,
    pub expires_at: u64,
}

/// How a sign-in ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInEnd {
    Succeeded {
        user: Option<String>,
    },
    Failed {
        message: String,
        details: Option<String>,
    },
    Canceled,
    TimedOut,
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    session: Session,
    waiting: Option<Waiting>,
    attempts: u64,
    pub token_storage: Option<TokenStorage>,
    /// Where the token is kept, when that deserves a word (no keyring).
    pub warning: Option<String>,
}

impl Account {
    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn signed_in(&self) -> bool {
        matches!(self.session, Session::SignedIn { .. })
    }

    pub fn waiting(&self) -> Option<&Waiting> {
        self.waiting.as_ref()
    }

    /// What the token store says at launch or after a change: a token, or none. An ended
    /// session stays ended while the token is the refused one.
    pub fn token_found(&mut self, user: Option<String>, present: bool) {
        self.session = match (&self.session, present) {
            (_, false) => Session::SignedOut,
            (Session::Ended { .. }, true) => Session::Ended { user },
            (_, true) => Session::SignedIn { user },
        };
    }

    /// Kandan refused the token. True the first time, when the owner is to be told.
    pub fn session_ended(&mut self) -> bool {
        match &self.session {
            Session::Ended { .. } => false,
            Session::SignedIn { user } => {
                self.session = Session::Ended { user: user.clone() };
                true
            }
            Session::SignedOut => {
                self.session = Session::Ended { user: None };
                true
            }
        }
    }

    pub fn signed_out(&mut self) {
        self.session = Session::SignedOut;
    }

    /// The browser was sent to `url`; returns the attempt's number. A new attempt replaces
    /// one still waiting.
    pub fn begin(&mut self, url: String, now_ms: u64) -> u64 {
        self.attempts += 1;
        self.waiting = Some(Waiting {
            attempt: self.attempts,
            url,
            started_at: now_ms,
            expires_at: now_ms + SIGN_IN_TIMEOUT_MS,
        });
        self.attempts
    }

    /// Attempt `attempt` ended. Returns the notice to show, or `None` if that attempt
    /// was no longer the one waiting (replaced, or already ended).
    pub fn finish(&mut self, attempt: u64, end: SignInEnd) -> Option<NewNotice> {
        if self.waiting.as_ref().map(|waiting| waiting.attempt) != Some(attempt) {
            return None;
        }
        self.waiting = None;
        Some(match end {
            SignInEnd::Succeeded { user } => {
                let text = match &user {
                    Some(user) => format!("Signed in to Kandan as {user}."),
                    None => "Signed in to Kandan.".to_owned(),
                };
                self.session = Session::SignedIn { user };
                NewNotice::info(text)
            }
            SignInEnd::Failed { message, details } => NewNotice {
                details,
                ..NewNotice::error(format!("Sign-in did not finish: {message}"))
                    .with_action(NextStep::SignIn)
            },
            SignInEnd::Canceled => NewNotice::info("Sign-in canceled."),
            SignInEnd::TimedOut => NewNotice {
                level: ActivityLevel::Warning,
                ..NewNotice::info(
                    "The browser did not come back within 5 minutes, so the sign-in was \
                     stopped. Sign in to try again.",
                )
                .with_action(NextStep::SignIn)
            },
        })
    }

    pub fn snapshot(&self, kandan_url: &str) -> AccountSnapshot {
        let (signed_in, session_ended, user) = match &self.session {
            Session::SignedOut => (false, false, None),
            Session::SignedIn { user } => (true, false, user.clone()),
            Session::Ended { user } => (false, true, user.clone()),
        };
        AccountSnapshot {
            signed_in,
            session_ended,
            kandan_url: kandan_url.to_owned(),
            kandan_host: host_of(kandan_url),
            user,
            token_storage: self.token_storage,
            warning: self.warning.clone(),
            sign_in: self.waiting.clone(),
        }
    }
}

/// "kandan.example.com" from "wss://kandan.example.com/socket".
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| url.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSnapshot {
    pub signed_in: bool,
    /// Kandan ended the session: "Your Kandan session ended — Sign in again".
    pub session_ended: bool,
    pub kandan_url: String,
    pub kandan_host: String,
    pub user: Option<String>,
    pub token_storage: Option<TokenStorage>,
    pub warning: Option<String>,
    /// A sign-in waiting for the browser.
    pub sign_in: Option<Waiting>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_ends_four_ways_each_with_its_message() {
        let mut account = Account::default();
        let first = account.begin("https://k/authorize?state=1".into(), 1_000);
        let waiting = account.waiting().unwrap().clone();
        assert_eq!(waiting.expires_at, 1_000 + SIGN_IN_TIMEOUT_MS);
        assert_eq!(
            account.snapshot("wss://k").sign_in,
            Some(waiting),
            "the window shows the wait and the link"
        );
        let canceled = account.finish(first, SignInEnd::Canceled).unwrap();
        assert_eq!(canceled.text, "Sign-in canceled.");
        assert_eq!(canceled.action, None);
        assert!(account.waiting().is_none());
        assert_eq!(
            account.finish(first, SignInEnd::TimedOut),
            None,
            "an attempt ends once"
        );

        let second = account.begin("u".into(), 2_000);
        let timed_out = account.finish(second, SignInEnd::TimedOut).unwrap();
        assert_eq!(timed_out.level, ActivityLevel::Warning);
        assert_eq!(timed_out.action, Some(NextStep::SignIn));

        let third = account.begin("u".into(), 3_000);
        let fourth = account.begin("u".into(), 3_500);
        assert_eq!(
            account.finish(third, SignInEnd::Canceled),
            None,
            "a replaced attempt says nothing"
        );
        let failed = account
            .finish(
                fourth,
                SignInEnd::Failed {
                    message: "Kandan did not authorize Linzumi".into(),
                    details: Some("access_denied".into()),
                },
            )
            .unwrap();
        assert_eq!(
            failed.text,
            "Sign-in did not finish: Kandan did not authorize Linzumi"
        );
        assert_eq!(failed.details.as_deref(), Some("access_denied"));
        assert!(!account.signed_in());

        let fifth = account.begin("u".into(), 4_000);
        let done = account
            .finish(
                fifth,
                SignInEnd::Succeeded {
                    user: Some("ada".into()),
                },
            )
            .unwrap();
        assert_eq!(done.text, "Signed in to Kandan as ada.");
        assert!(account.signed_in());
    }

    #[test]
    fn an_ended_session_is_said_once_and_signing_in_again_ends_it() {
        let mut account = Account::default();
        account.token_found(Some("ada".into()), true);
        assert!(account.signed_in());
        assert!(account.session_ended(), "the first refusal is news");
        assert!(!account.session_ended(), "every other folder's is not");
        let snapshot = account.snapshot("wss://kandan.example.com/socket");
        assert!(snapshot.session_ended && !snapshot.signed_in);
        assert_eq!(snapshot.user.as_deref(), Some("ada"));
        assert_eq!(snapshot.kandan_host, "kandan.example.com");
        // Reading the same (refused) token again does not hide that it ended.
        account.token_found(Some("ada".into()), true);
        assert!(!account.signed_in());
        let attempt = account.begin("u".into(), 0);
        account.finish(attempt, SignInEnd::Succeeded { user: None });
        assert!(account.signed_in());
        assert!(!account.snapshot("x").session_ended);
        account.signed_out();
        assert_eq!(account.session(), &Session::SignedOut);
        account.token_found(None, false);
        assert_eq!(account.session(), &Session::SignedOut);
    }

    #[test]
    fn hosts_for_the_header() {
        assert_eq!(host_of("ws://127.0.0.1:4160"), "127.0.0.1:4160");
        assert_eq!(host_of("https://kandan.example.com"), "kandan.example.com");
        assert_eq!(host_of("not a url"), "not a url");
    }
}
