use super::*;

fn sample(name: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_with(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(&sample(name)).unwrap();
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

fn push(provider: Provider, kind: &str, body: &[u8]) -> Push {
    match parse(provider, kind, body).unwrap() {
        GitEvent::Push(p) => p,
        other => panic!("expected a push, got {other:?}"),
    }
}

fn pull_request(provider: Provider, kind: &str, body: &[u8]) -> PullRequest {
    match parse(provider, kind, body).unwrap() {
        GitEvent::PullRequest(p) => p,
        other => panic!("expected a pull request, got {other:?}"),
    }
}

#[test]
fn github_push_reads_refs_commits_and_the_union_of_changed_files() {
    let p = push(
        Provider::GitHub,
        "push",
        sample("github-push.json").as_bytes(),
    );
    assert_eq!(p.git_ref, GitRef::Branch("main".into()));
    assert_eq!(p.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(p.after, "e8c8a3b5d1f4a2c7e9b0d3f6a8c1e4b7d0f2a5c8");
    assert!(!p.created && !p.deleted && !p.forced);
    assert_eq!(p.repository.full_name, "Codertocat/Hello-World");
    assert_eq!(
        p.repository.clone_url,
        "https://github.com/Codertocat/Hello-World.git"
    );
    assert_eq!(
        p.repository.ssh_url.as_deref(),
        Some("git@github.com:Codertocat/Hello-World.git")
    );
    assert_eq!(
        p.repository.html_url.as_deref(),
        Some("https://github.com/Codertocat/Hello-World")
    );
    assert_eq!(p.repository.default_branch.as_deref(), Some("main"));
    assert_eq!(p.commits.len(), 2);
    assert_eq!(
        p.commits[0].message,
        "Add the orders service\n\nWith its build file."
    );
    assert_eq!(p.commits[1].author.name, "Monalisa Octocat");
    assert_eq!(
        p.commits[1].author.email.as_deref(),
        Some("mona@github.com")
    );
    assert_eq!(
        p.commits[1].timestamp.as_deref(),
        Some("2019-05-15T15:25:02-05:00")
    );
    // Added, modified and removed, over both commits, each path once, sorted.
    assert_eq!(
        p.changed_files.paths,
        [
            "README.md",
            "scripts/old.sh",
            "services/orders/Cargo.toml",
            "services/orders/src/main.rs"
        ]
    );
    assert!(p.changed_files.complete);
}

#[test]
fn github_deleted_tag_push() {
    let p = push(
        Provider::GitHub,
        "push",
        sample("github-push-tag-deleted.json").as_bytes(),
    );
    assert_eq!(p.git_ref, GitRef::Tag("simple-tag".into()));
    assert!(p.deleted);
    assert!(p.commits.is_empty());
    assert!(p.changed_files.paths.is_empty());
}

#[test]
fn created_and_deleted_follow_the_zero_commit_when_not_stated() {
    let body = json_with("gitea-push.json", |v| {
        v["before"] = "0000000000000000000000000000000000000000".into();
    });
    let p = push(Provider::Gitea, "push", &body);
    assert!(p.created && !p.deleted);
    let body = json_with("gitea-push.json", |v| {
        v["after"] = "0".repeat(64).into();
    });
    let p = push(Provider::Gitea, "push", &body);
    assert!(p.deleted && !p.created);
}

#[test]
fn github_file_lists_are_incomplete_when_commits_are_truncated_forced_or_unlisted() {
    // 2048 commits: GitHub's limit, so there may have been more.
    let body = json_with("github-push.json", |v| {
        let commit = v["commits"][0].clone();
        v["commits"] = Value::Array(vec![commit; github::MAX_COMMITS]);
    });
    assert!(!push(Provider::GitHub, "push", &body).changed_files.complete);

    let body = json_with("github-push.json", |v| v["forced"] = true.into());
    let p = push(Provider::GitHub, "push", &body);
    assert!(p.forced && !p.changed_files.complete);

    let body = json_with("github-push.json", |v| {
        v["commits"][1].as_object_mut().unwrap().remove("modified");
    });
    let p = push(Provider::GitHub, "push", &body);
    assert!(!p.changed_files.complete);
    // What is listed still counts.
    assert!(
        p.changed_files
            .paths
            .contains(&"scripts/old.sh".to_string())
    );
}

#[test]
fn github_pull_request_opened() {
    let pr = pull_request(
        Provider::GitHub,
        "pull_request",
        sample("github-pull_request-opened.json").as_bytes(),
    );
    assert_eq!(pr.number, 2);
    assert_eq!(pr.event, PullRequestEvent::Open);
    assert_eq!(pr.action, "opened");
    assert_eq!(pr.title, "Update the README with new information.");
    assert_eq!(pr.source_branch, "changes");
    assert_eq!(pr.destination_branch, "master");
    assert_eq!(pr.head_commit, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(
        pr.base_commit.as_deref(),
        Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    );
    assert!(!pr.merged);
    assert_eq!(pr.source_clone_url, None, "same repository, not a fork");
    assert_eq!(pr.changed_files, ChangedFiles::unknown());
}

#[test]
fn github_pull_request_actions_map_to_codepipeline_events() {
    for (action, expected) in [
        ("opened", Some(PullRequestEvent::Open)),
        ("reopened", Some(PullRequestEvent::Open)),
        ("synchronize", Some(PullRequestEvent::Updated)),
        ("closed", Some(PullRequestEvent::Closed)),
        ("edited", None),
        ("labeled", None),
        ("ready_for_review", None),
    ] {
        let body = json_with("github-pull_request-opened.json", |v| {
            v["action"] = action.into()
        });
        match (
            parse(Provider::GitHub, "pull_request", &body).unwrap(),
            expected,
        ) {
            (GitEvent::PullRequest(pr), Some(event)) => assert_eq!(pr.event, event, "{action}"),
            (GitEvent::Other(kind), None) => assert_eq!(kind, format!("pull_request ({action})")),
            (got, _) => panic!("{action}: {got:?}"),
        }
    }
}

#[test]
fn a_merged_pull_request_from_a_fork() {
    let body = json_with("github-pull_request-opened.json", |v| {
        v["action"] = "closed".into();
        v["pull_request"]["merged"] = true.into();
        v["pull_request"]["head"]["repo"]["clone_url"] =
            "https://github.com/octocat/Hello-World.git".into();
    });
    let pr = pull_request(Provider::GitHub, "pull_request", &body);
    assert_eq!(pr.event, PullRequestEvent::Closed);
    assert!(pr.merged);
    assert_eq!(
        pr.source_clone_url.as_deref(),
        Some("https://github.com/octocat/Hello-World.git")
    );
    // A deleted fork: `head.repo` is null.
    let body = json_with("github-pull_request-opened.json", |v| {
        v["pull_request"]["head"]["repo"] = Value::Null;
    });
    assert_eq!(
        pull_request(Provider::GitHub, "pull_request", &body).source_clone_url,
        None
    );
}

#[test]
fn ping_and_unknown_events_are_other_not_errors() {
    assert_eq!(
        parse(
            Provider::GitHub,
            "ping",
            sample("github-ping.json").as_bytes()
        )
        .unwrap(),
        GitEvent::Other("ping".into())
    );
    assert_eq!(
        parse(Provider::GitLab, "Issue Hook", b"{}").unwrap(),
        GitEvent::Other("Issue Hook".into())
    );
    assert_eq!(
        parse(Provider::Gitea, "create", b"{\"ref\": \"v1\"}").unwrap(),
        GitEvent::Other("create".into())
    );
    // Still JSON, though: a ping with a broken body is an error.
    assert!(matches!(
        parse(Provider::GitHub, "ping", b"{"),
        Err(EventError::Json { .. })
    ));
}

#[test]
fn gitlab_push_reads_the_project_and_knows_its_commit_list_is_truncated() {
    let p = push(
        Provider::GitLab,
        "Push Hook",
        sample("gitlab-push.json").as_bytes(),
    );
    assert_eq!(p.git_ref, GitRef::Branch("master".into()));
    assert_eq!(p.repository.full_name, "mike/diaspora");
    assert_eq!(
        p.repository.clone_url,
        "http://example.com/mike/diaspora.git"
    );
    assert_eq!(
        p.repository.ssh_url.as_deref(),
        Some("git@example.com:mike/diaspora.git")
    );
    assert_eq!(
        p.repository.html_url.as_deref(),
        Some("http://example.com/mike/diaspora")
    );
    assert_eq!(p.repository.default_branch.as_deref(), Some("master"));
    assert_eq!(p.commits.len(), 2);
    assert_eq!(p.commits[0].author.name, "Jordi Mallach");
    assert_eq!(
        p.changed_files.paths,
        ["CHANGELOG", "app/controller/application.rb"]
    );
    // total_commits_count is 4 but only 2 are listed.
    assert!(!p.changed_files.complete);

    let body = json_with("gitlab-push.json", |v| v["total_commits_count"] = 2.into());
    assert!(
        push(Provider::GitLab, "Push Hook", &body)
            .changed_files
            .complete
    );
}

#[test]
fn gitlab_tag_push_and_system_hook() {
    let body = json_with("gitlab-push.json", |v| {
        v["object_kind"] = "tag_push".into();
        v["ref"] = "refs/tags/v1.0.0".into();
    });
    let p = push(Provider::GitLab, "Tag Push Hook", &body);
    assert_eq!(p.git_ref, GitRef::Tag("v1.0.0".into()));
    // The same payload through a system hook.
    assert_eq!(
        push(Provider::GitLab, "System Hook", &body).git_ref,
        GitRef::Tag("v1.0.0".into())
    );
    assert_eq!(
        parse(
            Provider::GitLab,
            "System Hook",
            br#"{"object_kind": "repository_update"}"#
        )
        .unwrap(),
        GitEvent::Other("System Hook (repository_update)".into())
    );
}

#[test]
fn gitlab_merge_request_update_with_a_new_revision_is_updated() {
    let pr = pull_request(
        Provider::GitLab,
        "Merge Request Hook",
        sample("gitlab-merge_request.json").as_bytes(),
    );
    assert_eq!(pr.event, PullRequestEvent::Updated);
    assert_eq!(pr.action, "update");
    assert_eq!(pr.number, 1);
    assert_eq!(pr.title, "MS-Viewport");
    assert_eq!(pr.source_branch, "ms-viewport");
    assert_eq!(pr.destination_branch, "master");
    assert_eq!(pr.head_commit, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(pr.repository.full_name, "gitlabhq/gitlab-test");
    assert_eq!(
        pr.source_clone_url.as_deref(),
        Some("http://example.com/awesome_space/awesome_project.git")
    );
    assert!(!pr.merged);
}

#[test]
fn gitlab_merge_request_actions() {
    for (action, oldrev, expected) in [
        ("open", false, Some(PullRequestEvent::Open)),
        ("reopen", false, Some(PullRequestEvent::Open)),
        ("update", true, Some(PullRequestEvent::Updated)),
        ("update", false, None), // a title or label change
        ("close", false, Some(PullRequestEvent::Closed)),
        ("merge", false, Some(PullRequestEvent::Closed)),
        ("approved", false, None),
    ] {
        let body = json_with("gitlab-merge_request.json", |v| {
            let attrs = v["object_attributes"].as_object_mut().unwrap();
            attrs.insert("action".into(), action.into());
            if !oldrev {
                attrs.remove("oldrev");
            }
        });
        match (
            parse(Provider::GitLab, "Merge Request Hook", &body).unwrap(),
            expected,
        ) {
            (GitEvent::PullRequest(pr), Some(event)) => {
                assert_eq!(pr.event, event, "{action}");
                assert_eq!(pr.merged, action == "merge");
            }
            (GitEvent::Other(kind), None) => {
                assert_eq!(kind, format!("Merge Request Hook ({action})"))
            }
            (got, _) => panic!("{action}: {got:?}"),
        }
    }
}

#[test]
fn gitea_and_forgejo_push() {
    for provider in [Provider::Gitea, Provider::Forgejo] {
        let p = push(provider, "push", sample("gitea-push.json").as_bytes());
        assert_eq!(p.git_ref, GitRef::Branch("develop".into()));
        assert_eq!(p.repository.full_name, "gitea/webhooks");
        assert_eq!(
            p.repository.ssh_url.as_deref(),
            Some("ssh://gitea@localhost:2222/gitea/webhooks.git")
        );
        assert_eq!(p.commits[0].message, "Webhooks Yay!\n");
        assert_eq!(p.changed_files.paths, ["docs/hooks.md", "web/app.js"]);
        assert!(p.changed_files.complete);
    }
    let body = json_with("gitea-push.json", |v| v["total_commits"] = 7.into());
    assert!(!push(Provider::Gitea, "push", &body).changed_files.complete);
}

#[test]
fn gitea_synchronized_pull_request_from_a_fork() {
    let pr = pull_request(
        Provider::Forgejo,
        "pull_request",
        sample("gitea-pull_request-synchronized.json").as_bytes(),
    );
    assert_eq!(pr.event, PullRequestEvent::Updated);
    assert_eq!(pr.number, 7);
    assert_eq!(pr.source_branch, "cache-deps");
    assert_eq!(pr.destination_branch, "master");
    assert_eq!(pr.head_commit, "4f1b2c3d4e5f60718293a4b5c6d7e8f901234567");
    assert_eq!(
        pr.source_clone_url.as_deref(),
        Some("http://localhost:3000/alice/webhooks.git")
    );
    let body = json_with("gitea-pull_request-synchronized.json", |v| {
        v["action"] = "label_updated".into();
    });
    assert_eq!(
        parse(Provider::Gitea, "pull_request", &body).unwrap(),
        GitEvent::Other("pull_request (label_updated)".into())
    );
}

/// A change to a sample payload.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn missing_and_mistyped_fields_name_their_path() {
    let cases: Vec<(Provider, &str, &str, Edit, &str)> = vec![
        (
            Provider::GitHub,
            "push",
            "github-push.json",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("ref");
            }),
            "`ref` is missing; expected a string",
        ),
        (
            Provider::GitHub,
            "push",
            "github-push.json",
            Box::new(|v| v["commits"][0]["added"][1] = 7.into()),
            "`commits[0].added[1]` is a number; expected a string",
        ),
        (
            Provider::GitHub,
            "push",
            "github-push.json",
            Box::new(|v| v["commits"][0]["author"] = Value::Null),
            "`commits[0].author` is missing; expected an object with `name`",
        ),
        (
            Provider::GitHub,
            "pull_request",
            "github-pull_request-opened.json",
            Box::new(|v| {
                v["pull_request"]["head"]
                    .as_object_mut()
                    .unwrap()
                    .remove("sha");
            }),
            "`pull_request.head.sha` is missing; expected a string",
        ),
        (
            Provider::GitHub,
            "push",
            "github-push.json",
            Box::new(|v| v["repository"] = "Codertocat/Hello-World".into()),
            "`repository` is a string; expected an object",
        ),
        (
            Provider::GitHub,
            "push",
            "github-push.json",
            Box::new(|v| v["deleted"] = "no".into()),
            "`deleted` is a string; expected true or false",
        ),
        (
            Provider::GitLab,
            "Push Hook",
            "gitlab-push.json",
            Box::new(|v| {
                v["project"].as_object_mut().unwrap().remove("git_http_url");
            }),
            "`project.git_http_url` is missing; expected a string",
        ),
        (
            Provider::GitLab,
            "Push Hook",
            "gitlab-push.json",
            Box::new(|v| v["total_commits_count"] = (-1).into()),
            "`total_commits_count` is a number; expected a whole number",
        ),
        (
            Provider::GitLab,
            "Merge Request Hook",
            "gitlab-merge_request.json",
            Box::new(|v| {
                v["object_attributes"]
                    .as_object_mut()
                    .unwrap()
                    .remove("last_commit");
            }),
            "`object_attributes.last_commit` is missing; expected an object with `id`",
        ),
    ];
    for (provider, kind, file, edit, message) in cases {
        let body = json_with(file, edit);
        let err = parse(provider, kind, &body).unwrap_err();
        assert_eq!(err.to_string(), message, "{file}");
    }
}

#[test]
fn a_base_that_is_an_array_is_a_type_error_at_its_path() {
    let body = json_with("gitea-pull_request-synchronized.json", |v| {
        v["pull_request"]["base"] = Value::Array(vec![]);
    });
    assert_eq!(
        parse(Provider::Gitea, "pull_request", &body)
            .unwrap_err()
            .to_string(),
        "`pull_request.base` is an array; expected an object"
    );
}

#[test]
fn bodies_that_are_not_json_objects() {
    let err = parse(Provider::GitHub, "push", b"{\"ref\": ").unwrap_err();
    assert!(matches!(err, EventError::Json { line: 1, .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the payload is not valid JSON: ")
    );
    assert_eq!(
        parse(Provider::GitHub, "push", b"[1, 2]")
            .unwrap_err()
            .to_string(),
        "`payload` is an array; expected an object"
    );
    assert!(matches!(
        parse(Provider::GitLab, "Push Hook", b""),
        Err(EventError::Json { .. })
    ));
    assert!(matches!(
        parse(Provider::Gitea, "push", b"\xff\xfe"),
        Err(EventError::Json { .. })
    ));
}

#[test]
fn form_encoded_payloads_are_decoded() {
    let json = sample("github-push.json");
    let mut form = b"payload=".to_vec();
    for b in json.bytes() {
        match b {
            b' ' => form.push(b'+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => form.push(b),
            _ => form.extend(format!("%{b:02X}").bytes()),
        }
    }
    let from_form = push(Provider::GitHub, "push", &form);
    assert_eq!(from_form, push(Provider::GitHub, "push", json.as_bytes()));
    assert_eq!(
        parse(Provider::GitHub, "push", b"payload=%7").unwrap_err(),
        EventError::Form("`%` must be followed by two hexadecimal digits")
    );
    assert_eq!(
        parse(Provider::GitHub, "push", b"payload=%7B%7D&x=1").unwrap_err(),
        EventError::Form("expected only the `payload` field")
    );
}

#[test]
fn parse_request_detects_the_provider_from_the_headers() {
    let headers = Headers::new([("X-Gitea-Event", "push"), ("X-GitHub-Event", "push")]);
    let p = match parse_request(&headers, sample("gitea-push.json").as_bytes()).unwrap() {
        GitEvent::Push(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(p.repository.full_name, "gitea/webhooks");
    assert_eq!(
        parse_request(&Headers::default(), b"{}")
            .unwrap_err()
            .to_string(),
        "no event header: expected one of `X-GitHub-Event`, `X-Gitlab-Event`, `X-Gitea-Event`, `X-Forgejo-Event`"
    );
    let bad = Headers::new([("X-GitHub-Event", &b"\xff"[..])]);
    assert_eq!(
        parse_request(&bad, b"{}").unwrap_err(),
        EventError::NoEventKind("X-GitHub-Event")
    );
}

#[test]
fn set_changed_files_completes_the_list() {
    let mut event = parse(
        Provider::GitHub,
        "pull_request",
        sample("github-pull_request-opened.json").as_bytes(),
    )
    .unwrap();
    event.set_changed_files(["b.txt", "a.txt", "b.txt"]);
    assert_eq!(
        event.changed_files(),
        Some(&ChangedFiles {
            paths: vec!["a.txt".into(), "b.txt".into()],
            complete: true
        })
    );
    let mut other = GitEvent::Other("ping".into());
    other.set_changed_files(["a"]);
    assert_eq!(other.changed_files(), None);
    assert_eq!(other.repository(), None);
}

#[test]
fn git_ref_round_trips() {
    for full in [
        "refs/heads/feature/x",
        "refs/tags/v1.2",
        "refs/notes/commits",
        "HEAD",
    ] {
        assert_eq!(GitRef::parse(full).full(), full);
    }
    assert_eq!(GitRef::parse("refs/heads/a/b").branch(), Some("a/b"));
    assert_eq!(GitRef::parse("refs/tags/v1").tag(), Some("v1"));
    assert_eq!(GitRef::parse("refs/tags/v1").branch(), None);
}
