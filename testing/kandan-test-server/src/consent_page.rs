//! The HTML consent page shown by the authorize endpoint when OAuth is not auto-approved
//! (the local demo, or tests that drive a real browser flow).

use std::fmt::Write as _;

use crate::TestUser;
use crate::html::escape;
use crate::oauth::AuthorizeRequest;

/// A form that POSTs the authorize request back to `action` with the chosen user, and with
/// the server's admin key when `ask_key` (the person types it in; see [`crate::guard`]).
pub(crate) fn render(
    action: &str,
    request: &AuthorizeRequest,
    users: &[TestUser],
    ask_key: bool,
) -> String {
    let target = match (&request.workspace, &request.channel) {
        (Some(workspace), Some(channel)) => format!("#{channel} in {workspace}"),
        _ if request.onboarding.as_deref() == Some("start") => "your personal workspace".into(),
        _ => "your account".into(),
    };
    let mut hidden = String::new();
    let fields = [
        ("redirect_uri", Some(&request.redirect_uri)),
        ("state", Some(&request.state)),
        ("workspace", request.workspace.as_ref()),
        ("channel", request.channel.as_ref()),
        ("onboarding", request.onboarding.as_ref()),
        ("code_challenge", request.code_challenge.as_ref()),
        (
            "code_challenge_method",
            request.code_challenge_method.as_ref(),
        ),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            // Writing to a String cannot fail.
            let _ = writeln!(
                hidden,
                r#"    <input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            );
        }
    }
    let mut options = String::new();
    for user in users {
        let slug = escape(&user.slug);
        let _ = writeln!(options, r#"      <option value="{slug}">{slug}</option>"#);
    }
    let key = if ask_key {
        "    <label>Server key (printed where the server was started) \
         <input type=\"password\" name=\"key\" autocomplete=\"off\" required></label>\n"
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Authorize the local Codex runner</title></head>
<body>
  <h1>Authorize the local Codex runner</h1>
  <p>A local runner asks to act for you in {target}.</p>
  <form method="post" action="{action}">
{hidden}    <label>Act as <select name="user">
{options}    </select></label>
{key}    <button type="submit">Authorize</button>
  </form>
</body>
</html>
"#,
        target = escape(&target),
        action = escape(action),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_request_values() {
        let request = AuthorizeRequest {
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            state: r#""><script>x</script>"#.into(),
            workspace: None,
            channel: None,
            onboarding: None,
            code_challenge: Some("c".repeat(43)),
            code_challenge_method: Some("S256".into()),
        };
        let users = [TestUser {
            id: 1,
            slug: "sean".into(),
        }];
        let page = render("/authorize", &request, &users, false);
        assert!(page.contains(r#"value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;""#));
        assert!(page.contains(r#"name="code_challenge_method" value="S256""#));
        assert!(!page.contains(r#"name="key""#));
        let keyed = render("/authorize", &request, &users, true);
        assert!(keyed.contains(r#"type="password" name="key""#));
        assert!(!page.contains("<script>"));
        assert!(page.contains(r#"<option value="sean">sean</option>"#));
        assert!(page.contains("Authorize</button>"));
    }
}
