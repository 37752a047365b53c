//! Checks on the values users give (URLs, branches, commit ids) before any
//! of them reaches a git command line, and URL redaction for messages.

use crate::{Error, Result};

/// Longest repository URL accepted.
const MAX_URL_BYTES: usize = 2048;

/// Refuses a URL git could read as an option, or that carries control
/// characters (a newline could forge lines in git's credential protocol).
pub(crate) fn check_url(url: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    if url.is_empty() {
        return Err(invalid("empty"));
    }
    if url.starts_with('-') {
        return Err(invalid("starts with '-' (would be read as an option)"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(invalid("longer than 2048 bytes"));
    }
    if url.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    Ok(())
}

/// The URL with its user-info (`user:password@`) replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    match userinfo_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// The user-info of a `scheme://userinfo@host/...` URL, if it has a
/// password or token worth hiding (`ssh://git@host` has none).
pub(crate) fn url_secret(url: &str) -> Option<&str> {
    let (start, end) = userinfo_span(url)?;
    let userinfo = &url[start..end];
    userinfo.contains(':').then_some(userinfo)
}

/// Byte range of the user-info, without the `@`.
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    Some((start, at))
}

/// Refuses branch names git would refuse (`git check-ref-format --branch`
/// rules), and those that could be read as an option or break a refspec.
pub(crate) fn check_branch(branch: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidBranch {
        branch: branch.to_owned(),
        reason,
    };
    if branch.is_empty() {
        return Err(invalid("empty"));
    }
    if branch.len() > 255 {
        return Err(invalid("longer than 255 bytes"));
    }
    if branch.starts_with('-') {
        return Err(invalid("starts with '-'"));
    }
    if branch == "@" || branch == "HEAD" {
        return Err(invalid("not a branch name"));
    }
    if branch.chars().any(|c| {
        c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\' | '\u{7f}')
    }) {
        return Err(invalid(
            "contains a space, a control character or one of ~ ^ : ? * [ \\",
        ));
    }
    if branch.contains("..") || branch.contains("@{") || branch.contains("//") {
        return Err(invalid("contains \"..\", \"@{\" or \"//\""));
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.ends_with('.') {
        return Err(invalid("starts or ends with '/' or ends with '.'"));
    }
    if branch
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(invalid(
            "a component starts with '.' or ends with \".lock\"",
        ));
    }
    Ok(())
}

/// A commit id of 40 (SHA-1) or 64 (SHA-256) hex digits, lowercased.
pub(crate) fn check_commit_id(id: &str) -> Result<String> {
    if (id.len() == 40 || id.len() == 64) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Error::InvalidCommitId { id: id.to_owned() })
    }
}

/// Whether `id` is the all-zero id a push of a new branch has as its "before".
pub fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_git_could_misread_are_refused() {
        for (url, why) in [
            ("", "empty"),
            ("--upload-pack=touch /tmp/x", "option"),
            ("-oProxyCommand=x", "option"),
            ("https://host/repo\n", "control"),
            ("https://host/\u{0}x", "control"),
        ] {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url:?}: {err}");
        }
        check_url("https://github.com/o/r.git").unwrap();
        check_url("/srv/git/r.git").unwrap();
        check_url("git@github.com:o/r.git").unwrap();
        assert!(check_url(&"a".repeat(3000)).is_err());
    }

    #[test]
    fn redaction_hides_user_info_only() {
        assert_eq!(
            redact_url("https://user:tok3n@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(redact_url("ssh://git@host/a@b"), "ssh://***@host/a@b");
        assert_eq!(redact_url("/srv/git/a@b"), "/srv/git/a@b");
        assert_eq!(url_secret("https://user:tok3n@h/r"), Some("user:tok3n"));
        assert_eq!(url_secret("ssh://git@h/r"), None);
        // The secret never shows in an error about the URL.
        let err = check_url("-https://u:s3cret@h/r").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn branch_rules() {
        for ok in [
            "main",
            "feature/x-1",
            "release-1.2",
            "a.b/c_d",
            "deps/@types",
        ] {
            check_branch(ok).unwrap();
        }
        for bad in [
            "", "-f", "a b", "a..b", "a:b", "a~1", "a^", "x?", "x*", "[x", "a\\b", "/a", "a/",
            "a.", "a//b", ".hidden", "a/.b", "x.lock", "a@{1}", "@", "HEAD", "a\nb",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn commit_ids() {
        let sha1 = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(check_commit_id(sha1).unwrap(), sha1.to_ascii_lowercase());
        check_commit_id(&"a".repeat(64)).unwrap();
        for bad in ["", "abc", "HEAD", "-n", &"g".repeat(40), &"a".repeat(41)] {
            assert!(check_commit_id(bad).is_err(), "{bad:?}");
        }
        assert!(is_zero_id(&"0".repeat(40)));
        assert!(!is_zero_id(sha1));
        assert!(!is_zero_id(""));
    }
}
