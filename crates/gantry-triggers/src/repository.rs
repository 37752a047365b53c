//! Whether a source action's `RepositoryUrl` names the repository a webhook
//! came from, however either side spells it.

use crate::event::Repository;

impl Repository {
    /// Whether `url` names this repository: one of the payload's URLs
    /// (HTTPS clone, SSH clone, web page) is the same repository.
    ///
    /// Two URLs are the same repository when their host and path agree,
    /// ignoring the scheme, user, port, a trailing `.git` or `/`, and case:
    /// `git@github.com:Acme/App.git`, `ssh://git@github.com:22/acme/app` and
    /// `https://github.com/acme/app` are one repository. Local paths and
    /// `file://` URLs match only the same path.
    ///
    /// ```
    /// use gantry_triggers::event::Repository;
    ///
    /// let repo = Repository {
    ///     full_name: "acme/app".into(),
    ///     clone_url: "https://github.com/acme/app.git".into(),
    ///     ssh_url: Some("git@github.com:acme/app.git".into()),
    ///     html_url: None,
    ///     default_branch: None,
    /// };
    /// assert!(repo.matches_url("ssh://git@github.com/Acme/App"));
    /// assert!(!repo.matches_url("https://github.com/acme/app-docs.git"));
    /// ```
    pub fn matches_url(&self, url: &str) -> bool {
        let Some(wanted) = key(url) else {
            return false;
        };
        self.urls().filter_map(key).any(|k| k == wanted)
    }
}

/// `host/path` in lower case, or `file:/path` for local repositories;
/// `None` for text that is no repository URL at all.
fn key(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") {
            return Some(format!("file:{}", trim_path(rest)));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        (host_of(authority), path)
    } else if url.starts_with('/') {
        return Some(format!("file:{}", trim_path(url)));
    } else {
        // scp-like `user@host:path`: a colon before any slash.
        let (authority, path) = url.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        (host_of(authority), path)
    };
    let path = trim_path(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host.to_lowercase(), path.to_lowercase()))
}

/// The host of `user@host:port`.
fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        // An IPv6 literal keeps its colons.
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

fn trim_path(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.trim_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Repository {
        Repository {
            full_name: "gitea/webhooks".into(),
            clone_url: "http://localhost:3000/gitea/webhooks.git".into(),
            ssh_url: Some("ssh://gitea@localhost:2222/gitea/webhooks.git".into()),
            html_url: Some("http://localhost:3000/gitea/webhooks".into()),
            default_branch: Some("master".into()),
        }
    }

    #[test]
    fn every_spelling_of_the_same_repository_matches() {
        for url in [
            "http://localhost:3000/gitea/webhooks.git",
            "https://localhost/gitea/webhooks",
            "ssh://gitea@localhost:2222/gitea/webhooks.git",
            "gitea@localhost:gitea/webhooks.git",
            "HTTP://LOCALHOST:3000/Gitea/Webhooks/",
            "  http://user:pw@localhost:3000/gitea/webhooks.git  ",
        ] {
            assert!(repo().matches_url(url), "{url}");
        }
    }

    #[test]
    fn other_repositories_hosts_and_local_paths_do_not_match() {
        for url in [
            "http://localhost:3000/gitea/webhooks-docs.git",
            "http://localhost:3000/alice/webhooks.git",
            "http://example.com/gitea/webhooks.git",
            "file:///srv/git/gitea/webhooks.git",
            "/gitea/webhooks",
            "webhooks",
            "",
            "http://localhost:3000/",
        ] {
            assert!(!repo().matches_url(url), "{url}");
        }
    }

    #[test]
    fn keys_of_local_and_ipv6_urls() {
        assert_eq!(
            key("file:///srv/git/app.git"),
            Some("file:srv/git/app".into())
        );
        assert_eq!(key("/srv/git/app.git/"), Some("file:srv/git/app".into()));
        assert_eq!(
            key("ssh://git@[::1]:2222/a/b.git"),
            Some("[::1]/a/b".into())
        );
        assert_eq!(key("https://h/a/b"), Some("h/a/b".into()));
        assert_eq!(key("no-colon-no-slash"), None);
        assert_eq!(key("a/b:c"), None);
    }
}
