use gantry_spec::pipeline::{PipelineDeclaration, parse_yaml};
use proptest::prelude::*;

use super::*;
use crate::event::{ChangedFiles, Commit, Person, Repository};

const URL: &str = "https://git.example.com/acme/shop.git";

/// A pipeline whose source action `Repo` reads `URL` on `main`, with
/// `triggers` (YAML, indented under `triggers:`) when given.
fn pipeline(triggers: &str) -> PipelineDeclaration {
    pipeline_with(
        "{RepositoryUrl: 'https://git.example.com/acme/shop.git', BranchName: main}",
        triggers,
    )
}

fn pipeline_with(configuration: &str, triggers: &str) -> PipelineDeclaration {
    let mut yaml = format!(
        "name: shop
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Repo
        actionTypeId: {{category: Source, owner: AWS, provider: Git, version: 1}}
        configuration: {configuration}
        outputArtifacts: [{{name: Src}}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {{category: Build, owner: AWS, provider: CodeBuild, version: 1}}
        configuration: {{ProjectName: shop}}
        inputArtifacts: [{{name: Src}}]
"
    );
    if !triggers.is_empty() {
        yaml.push_str("triggers:\n  - providerType: CodeStarSourceConnection\n    gitConfiguration:\n      sourceActionName: Repo\n");
        for line in triggers.lines() {
            yaml.push_str("      ");
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    match parse_yaml(&yaml) {
        Ok(p) => p,
        Err(errors) => panic!("{yaml}\n{errors:?}"),
    }
}

fn repository() -> Repository {
    Repository {
        full_name: "acme/shop".into(),
        clone_url: URL.into(),
        ssh_url: Some("git@git.example.com:acme/shop.git".into()),
        html_url: Some("https://git.example.com/acme/shop".into()),
        default_branch: Some("main".into()),
    }
}

fn push_to(git_ref: &str, files: &[&str]) -> GitEvent {
    GitEvent::Push(Push {
        repository: repository(),
        git_ref: GitRef::parse(git_ref),
        before: "1".repeat(40),
        after: "2".repeat(40),
        created: false,
        deleted: false,
        forced: false,
        commits: vec![Commit {
            id: "2".repeat(40),
            message: "change".into(),
            timestamp: None,
            author: Person {
                name: "Ada".into(),
                email: None,
            },
        }],
        changed_files: ChangedFiles::complete(files.iter().copied()),
    })
}

fn pull_request(event: PullRequestEvent, destination: &str) -> GitEvent {
    GitEvent::PullRequest(PullRequest {
        repository: repository(),
        number: 42,
        event,
        action: "whatever".into(),
        title: "A change".into(),
        source_branch: "feature/login".into(),
        destination_branch: destination.into(),
        head_commit: "3".repeat(40),
        base_commit: None,
        merged: false,
        source_clone_url: None,
        changed_files: ChangedFiles::unknown(),
    })
}

fn one(pipeline: &PipelineDeclaration, event: &GitEvent) -> Decision {
    let mut decisions = decide(pipeline, event);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    decisions.remove(0)
}

fn starts(pipeline: &PipelineDeclaration, event: &GitEvent) -> bool {
    one(pipeline, event).start
}

#[test]
fn without_triggers_a_push_to_the_branch_name_starts() {
    let p = pipeline("");
    let d = one(&p, &push_to("refs/heads/main", &["a"]));
    assert_eq!(
        d,
        Decision {
            start: true,
            source_action: "Repo".into(),
            reason: "push to branch `main`, the source action's `BranchName` (no trigger)".into()
        }
    );
    let d = one(&p, &push_to("refs/heads/dev", &["a"]));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "push to branch `dev`, not `main`, the source action's `BranchName` (no trigger)"
    );
    assert!(!starts(&p, &push_to("refs/tags/v1", &["a"])));
    assert!(!starts(&p, &pull_request(PullRequestEvent::Open, "main")));
    assert!(!starts(&p, &GitEvent::Other("ping".into())));
}

#[test]
fn without_branch_name_the_default_branch_counts() {
    let p = pipeline_with(
        "{RepositoryUrl: 'https://git.example.com/acme/shop.git'}",
        "",
    );
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert!(d.start);
    assert_eq!(
        d.reason,
        "push to branch `main`, the repository's default branch (no trigger)"
    );
    let mut event = push_to("refs/heads/main", &[]);
    if let GitEvent::Push(push) = &mut event {
        push.repository.default_branch = None;
    }
    assert!(!starts(&p, &event));
}

#[test]
fn a_deleted_branch_never_starts() {
    let mut event = push_to("refs/heads/main", &["src/a.rs"]);
    if let GitEvent::Push(push) = &mut event {
        push.deleted = true;
    }
    let d = one(&pipeline(""), &event);
    assert!(!d.start);
    assert_eq!(d.reason, "the push deletes `refs/heads/main`");
    let p = pipeline("push:\n  - branches: {includes: ['**']}");
    assert!(!starts(&p, &event));
}

#[test]
fn an_event_for_another_repository_starts_nothing() {
    let mut event = push_to("refs/heads/main", &["a"]);
    if let GitEvent::Push(push) = &mut event {
        push.repository.full_name = "acme/other".into();
        push.repository.clone_url = "https://git.example.com/acme/other.git".into();
        push.repository.ssh_url = None;
        push.repository.html_url = None;
    }
    let d = one(&pipeline(""), &event);
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "the event is for repository `acme/other`, but the source action reads `https://git.example.com/acme/shop.git`"
    );
    // The SSH spelling of the same repository matches.
    let p = pipeline_with(
        "{RepositoryUrl: 'git@git.example.com:acme/shop.git', BranchName: main}",
        "",
    );
    assert!(starts(&p, &push_to("refs/heads/main", &["a"])));
}

#[test]
fn branch_includes_and_excludes() {
    let p = pipeline(
        "push:\n  - branches: {includes: ['release/**', main], excludes: ['release/old/**']}",
    );
    assert!(starts(&p, &push_to("refs/heads/main", &[])));
    assert!(starts(&p, &push_to("refs/heads/release/2024", &[])));
    assert!(starts(&p, &push_to("refs/heads/release/2024/hotfix", &[])));
    let d = one(&p, &push_to("refs/heads/release/old/1", &[]));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: branch `release/old/1` is excluded by `release/old/**`"
    );
    let d = one(&p, &push_to("refs/heads/dev", &[]));
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: branch `dev` matches none of `release/**`, `main`"
    );
}

#[test]
fn branch_globs_match_the_name_and_star_stays_in_one_segment() {
    let p = pipeline("push:\n  - branches: {includes: ['feature/*']}");
    assert!(starts(&p, &push_to("refs/heads/feature/login", &[])));
    assert!(!starts(&p, &push_to("refs/heads/feature/login/v2", &[])));
    // The name, not `refs/heads/...`.
    let p = pipeline("push:\n  - branches: {includes: ['refs/heads/main']}");
    assert!(!starts(&p, &push_to("refs/heads/main", &[])));
}

#[test]
fn excludes_alone_include_everything_else() {
    let p = pipeline("push:\n  - branches: {excludes: [dev]}");
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert!(d.start);
    assert_eq!(d.reason, "`push[0]` matches: branch `main` is not excluded");
    assert!(!starts(&p, &push_to("refs/heads/dev", &[])));
}

#[test]
fn branches_and_file_paths_must_both_hold() {
    let p = pipeline(
        "push:\n  - branches: {includes: [main]}\n    filePaths: {includes: ['services/orders/**'], excludes: ['**/*.md']}",
    );
    let d = one(
        &p,
        &push_to(
            "refs/heads/main",
            &["README.md", "services/orders/src/main.rs"],
        ),
    );
    assert!(d.start);
    assert_eq!(
        d.reason,
        "`push[0]` matches: branch `main` matches `main`, file `services/orders/src/main.rs` matches `services/orders/**`"
    );
    // Right files, wrong branch.
    assert!(!starts(
        &p,
        &push_to("refs/heads/dev", &["services/orders/src/main.rs"])
    ));
    // Right branch, only excluded or unrelated files.
    let d = one(
        &p,
        &push_to("refs/heads/main", &["services/orders/README.md"]),
    );
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: all 1 changed files are excluded"
    );
    let d = one(
        &p,
        &push_to("refs/heads/main", &["services/billing/a.rs", "docs/x"]),
    );
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: none of 2 changed files matches `services/orders/**`"
    );
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: no file changed"
    );
}

#[test]
fn file_paths_alone_apply_to_any_branch_but_not_tags() {
    let p = pipeline("push:\n  - filePaths: {includes: ['src/**']}");
    assert!(starts(&p, &push_to("refs/heads/anything", &["src/lib.rs"])));
    assert!(!starts(&p, &push_to("refs/tags/v1", &["src/lib.rs"])));
}

#[test]
fn tag_filters_match_tag_names_alone() {
    let p = pipeline(
        "push:\n  - tags: {includes: ['v*'], excludes: ['v*-rc*']}\n    branches: {includes: [main]}",
    );
    let d = one(&p, &push_to("refs/tags/v1.2.0", &[]));
    assert!(d.start);
    assert_eq!(d.reason, "`push[0]` matches: tag `v1.2.0` matches `v*`");
    assert!(!starts(&p, &push_to("refs/tags/v1.3.0-rc1", &[])));
    assert!(!starts(&p, &push_to("refs/tags/release-1", &[])));
    // A branch push never matches a tag filter, even one that names branches.
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: `refs/heads/main` is not a tag"
    );
}

#[test]
fn several_filters_are_alternatives() {
    let p = pipeline(
        "push:\n  - tags: {includes: ['v*']}\n  - branches: {includes: [main]}\n    filePaths: {includes: ['app/**']}\n  - branches: {includes: ['hotfix/*']}",
    );
    assert!(starts(&p, &push_to("refs/tags/v2", &[])));
    assert!(starts(&p, &push_to("refs/heads/main", &["app/x"])));
    let d = one(&p, &push_to("refs/heads/hotfix/a", &["docs/y"]));
    assert_eq!(
        d.reason,
        "`push[2]` matches: branch `hotfix/a` matches `hotfix/*`"
    );
    let d = one(&p, &push_to("refs/heads/main", &["docs/y"]));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "no `push` filter matches: `push[0]`: `refs/heads/main` is not a tag; \
         `push[1]`: none of 1 changed files matches `app/**`; \
         `push[2]`: branch `main` matches none of `hotfix/*`"
    );
}

#[test]
fn push_filters_do_not_fire_on_pull_requests_and_vice_versa() {
    let p = pipeline("push:\n  - branches: {includes: [main]}");
    let d = one(&p, &pull_request(PullRequestEvent::Open, "main"));
    assert!(!d.start);
    assert_eq!(d.reason, "the trigger has no `pullRequest` filters");
    let p = pipeline("pullRequest:\n  - branches: {includes: [main]}");
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert_eq!(d.reason, "the trigger has no `push` filters");
}

#[test]
fn pull_request_events_and_destination_branch() {
    let p = pipeline("pullRequest:\n  - events: [OPEN, UPDATED]\n    branches: {includes: [main]}");
    let d = one(&p, &pull_request(PullRequestEvent::Open, "main"));
    assert!(d.start);
    assert_eq!(
        d.reason,
        "`pullRequest[0]` matches: event `OPEN`, destination branch `main` matches `main`"
    );
    assert!(starts(&p, &pull_request(PullRequestEvent::Updated, "main")));
    let d = one(&p, &pull_request(PullRequestEvent::Closed, "main"));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "no `pullRequest` filter matches: `pullRequest[0]`: event `CLOSED` is not among `OPEN`, `UPDATED`"
    );
    // The source branch (feature/login) is not what `branches` filters.
    assert!(!starts(
        &p,
        &pull_request(PullRequestEvent::Open, "develop")
    ));
    let any_event = pipeline("pullRequest:\n  - branches: {includes: [main]}");
    for e in [
        PullRequestEvent::Open,
        PullRequestEvent::Updated,
        PullRequestEvent::Closed,
    ] {
        assert!(starts(&any_event, &pull_request(e, "main")));
    }
}

#[test]
fn file_paths_of_a_pull_request_wait_for_the_file_list() {
    let p = pipeline(
        "pullRequest:\n  - branches: {includes: [main]}\n    filePaths: {includes: ['app/**']}",
    );
    let mut event = pull_request(PullRequestEvent::Open, "main");
    let d = one(&p, &event);
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "undecided until the changed files are listed: `pullRequest[0]`: no listed file matches \
         `filePaths`, and the payload does not list every changed file"
    );
    assert!(needs_changed_files(&p, &event));

    event.set_changed_files(["app/main.rs"]);
    assert!(!needs_changed_files(&p, &event));
    assert!(starts(&p, &event));
    event.set_changed_files(["docs/a.md"]);
    assert!(!starts(&p, &event));

    // A failing branch decides without the files.
    let other = pull_request(PullRequestEvent::Open, "develop");
    assert!(!needs_changed_files(&p, &other));
}

#[test]
fn an_incomplete_push_list_still_starts_on_a_listed_match() {
    let p = pipeline("push:\n  - filePaths: {includes: ['app/**']}");
    let mut event = push_to("refs/heads/main", &["app/a.rs"]);
    if let GitEvent::Push(push) = &mut event {
        push.changed_files.complete = false;
    }
    assert!(starts(&p, &event));
    assert!(!needs_changed_files(&p, &event));
    let mut event = push_to("refs/heads/main", &["docs/a.md"]);
    if let GitEvent::Push(push) = &mut event {
        push.changed_files.complete = false;
    }
    assert!(!starts(&p, &event));
    assert!(needs_changed_files(&p, &event));
    // Without filePaths, completeness does not matter.
    assert!(!needs_changed_files(
        &pipeline("push:\n  - branches: {includes: [main]}"),
        &event
    ));
}

#[test]
fn a_source_action_without_its_own_trigger_keeps_default_detection() {
    let yaml = "name: two
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: App
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'https://git.example.com/acme/shop.git', BranchName: main}
        outputArtifacts: [{name: AppSrc}]
      - name: Config
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'https://git.example.com/acme/shop-config.git', BranchName: main}
        outputArtifacts: [{name: ConfigSrc}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: shop, PrimarySource: AppSrc}
        inputArtifacts: [{name: AppSrc}, {name: ConfigSrc}]
triggers:
  - providerType: CodeStarSourceConnection
    gitConfiguration:
      sourceActionName: App
      push:
        - branches: {includes: ['release/*']}
";
    let p = parse_yaml(yaml).unwrap();
    let decisions = decide(&p, &push_to("refs/heads/main", &["a"]));
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0].source_action, "App");
    assert!(!decisions[0].start, "App's trigger wants release/*");
    assert_eq!(decisions[1].source_action, "Config");
    assert!(!decisions[1].start, "another repository");
    assert!(decisions[1].reason.contains("acme/shop-config.git"));
    let decisions = decide(&p, &push_to("refs/heads/release/1", &["a"]));
    assert!(decisions[0].start);
}

#[test]
fn detect_changes_false_turns_default_detection_off() {
    let yaml = "name: custom
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Repo
        actionTypeId: {category: Source, owner: Custom, provider: MyGit, version: 1}
        configuration: {FullRepositoryId: acme/shop, BranchName: main, DetectChanges: 'false'}
        outputArtifacts: [{name: Src}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: shop}
        inputArtifacts: [{name: Src}]
";
    let p = parse_yaml(yaml).unwrap();
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert!(!d.start);
    assert_eq!(
        d.reason,
        "the source action has `DetectChanges: false` and no trigger"
    );
    // FullRepositoryId is compared with the payload's full name.
    let p = parse_yaml(&yaml.replace(", DetectChanges: 'false'", "")).unwrap();
    assert!(starts(&p, &push_to("refs/heads/main", &[])));
    let p = parse_yaml(
        &yaml
            .replace("acme/shop,", "acme/web,")
            .replace(", DetectChanges: 'false'", ""),
    )
    .unwrap();
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert_eq!(
        d.reason,
        "the event is for repository `acme/shop`, but the source action reads `acme/web`"
    );
}

#[test]
fn the_lower_level_entry_points() {
    let p = pipeline("push:\n  - branches: {includes: [main]}");
    let git = &p.triggers.as_ref().unwrap()[0].git_configuration;
    assert!(evaluate_trigger(git, &push_to("refs/heads/main", &[])).start);
    let d = evaluate_trigger(git, &GitEvent::Other("ping".into()));
    assert_eq!(d.reason, "a `ping` event starts nothing");
    let action = &p.stages[0].actions[0];
    assert!(default_change_detection(action, &push_to("refs/heads/main", &[])).start);
}

#[test]
fn an_invalid_glob_fails_the_filter_instead_of_panicking() {
    // The pipeline parser rejects such patterns; a declaration built in
    // code may still carry one.
    let mut p = pipeline("push:\n  - branches: {includes: [main]}");
    let triggers = p.triggers.as_mut().unwrap();
    let push = triggers[0].git_configuration.push.as_mut().unwrap();
    push[0]
        .branches
        .as_mut()
        .unwrap()
        .includes
        .as_mut()
        .unwrap()[0]
        .value = "release/[0-9".into();
    let d = one(&p, &push_to("refs/heads/main", &[]));
    assert!(!d.start);
    assert!(
        d.reason.contains("`release/[0-9` is not a valid glob"),
        "{}",
        d.reason
    );
}

fn criteria(includes: &[String], excludes: &[String]) -> GitFilterCriteria {
    let list = |v: &[String]| {
        (!v.is_empty()).then(|| {
            v.iter()
                .map(|s| gantry_spec::Spanned::new(s.clone(), gantry_spec::Span::default()))
                .collect()
        })
    };
    GitFilterCriteria {
        span: gantry_spec::Span::default(),
        includes: list(includes),
        excludes: list(excludes),
    }
}

fn passes(c: &GitFilterCriteria, value: &str) -> bool {
    matches!(named(c, "branch", value), Verdict::Pass(_))
}

fn segment() -> impl Strategy<Value = String> {
    "[a-c]{1,3}"
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..4).prop_map(|s| s.join("/"))
}

fn pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            segment(),
            Just("*".to_string()),
            Just("**".to_string()),
            Just("a*".to_string())
        ],
        1..4,
    )
    .prop_map(|s| s.join("/"))
}

proptest! {
    #[test]
    fn an_exclude_always_wins(includes in proptest::collection::vec(pattern(), 0..4), value in name()) {
        // Excluding the value itself beats any include.
        let c = criteria(&includes, std::slice::from_ref(&value));
        prop_assert!(!passes(&c, &value));
    }

    #[test]
    fn no_includes_means_everything_not_excluded(excludes in proptest::collection::vec(pattern(), 0..4), value in name()) {
        let c = criteria(&[], &excludes);
        let excluded = excludes.iter().any(|e| glob(e).unwrap().is_match(&value));
        prop_assert_eq!(passes(&c, &value), !excluded);
    }

    #[test]
    fn a_criterion_is_any_include_and_no_exclude(
        includes in proptest::collection::vec(pattern(), 1..4),
        excludes in proptest::collection::vec(pattern(), 0..4),
        value in name(),
    ) {
        let hit = |list: &[String]| list.iter().any(|p| glob(p).unwrap().is_match(&value));
        let c = criteria(&includes, &excludes);
        prop_assert_eq!(passes(&c, &value), hit(&includes) && !hit(&excludes));
    }

    #[test]
    fn adding_an_include_never_turns_a_pass_into_a_fail(
        includes in proptest::collection::vec(pattern(), 1..4),
        extra in pattern(),
        value in name(),
    ) {
        let before = passes(&criteria(&includes, &[]), &value);
        let mut more = includes.clone();
        more.push(extra);
        prop_assert!(!before || passes(&criteria(&more, &[]), &value));
    }

    #[test]
    fn star_never_crosses_a_slash_and_double_star_does(value in name()) {
        let segments = value.split('/').count();
        prop_assert_eq!(passes(&criteria(&["*".into()], &[]), &value), segments == 1);
        prop_assert!(passes(&criteria(&["**".into()], &[]), &value));
    }

    #[test]
    fn file_paths_hold_iff_some_file_is_included_and_not_excluded(
        includes in proptest::collection::vec(pattern(), 0..3),
        excludes in proptest::collection::vec(pattern(), 0..3),
        paths in proptest::collection::vec(name(), 0..5),
    ) {
        let c = criteria(&includes, &excludes);
        let ok = |p: &String| {
            (includes.is_empty() || includes.iter().any(|i| glob(i).unwrap().is_match(p)))
                && !excludes.iter().any(|e| glob(e).unwrap().is_match(p))
        };
        let expected = paths.iter().any(ok);
        let got = matches!(files(&c, &ChangedFiles::complete(paths.clone())), Verdict::Pass(_));
        prop_assert_eq!(got, expected);
    }
}
