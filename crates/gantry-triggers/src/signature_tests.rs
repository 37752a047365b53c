use proptest::prelude::*;

use super::*;

const SECRET: &str = "It's a Secret to Everybody";
const BODY: &str = "Hello, World!";

fn headers(pairs: &[(&str, &str)]) -> Headers {
    Headers::new(pairs.iter().copied())
}

#[test]
fn github_documented_example_verifies() {
    // The example from GitHub's "Validating webhook deliveries" page.
    let h = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert_eq!(verify_github(&h, BODY.as_bytes(), SECRET), Ok(()));
    assert_eq!(
        sign_sha256(SECRET, BODY),
        h.text("x-hub-signature-256").unwrap()
    );
}

#[test]
fn header_names_are_case_insensitive_but_values_have_one_spelling() {
    let value = sign_sha256(SECRET, BODY);
    let h = headers(&[("x-hub-signature-256", &format!(" {value} "))]);
    assert_eq!(verify_github(&h, BODY.as_bytes(), SECRET), Ok(()));
    for other in [value.to_uppercase(), value.replace("sha256=", "SHA256="), {
        let hex = value.trim_start_matches("sha256=").to_uppercase();
        format!("sha256={hex}")
    }] {
        let h = headers(&[("X-Hub-Signature-256", &other)]);
        assert!(
            matches!(
                verify_github(&h, BODY.as_bytes(), SECRET),
                Err(SignatureError::Malformed { .. })
            ),
            "{other}"
        );
    }
}

#[test]
fn github_wrong_secret_or_body_is_a_mismatch() {
    let h = headers(&[("X-Hub-Signature-256", &sign_sha256(SECRET, BODY))]);
    assert_eq!(
        verify_github(&h, BODY.as_bytes(), "another secret"),
        Err(SignatureError::Mismatch {
            header: GITHUB_SIGNATURE_256
        })
    );
    assert_eq!(
        verify_github(&h, b"Hello, World?", SECRET),
        Err(SignatureError::Mismatch {
            header: GITHUB_SIGNATURE_256
        })
    );
}

#[test]
fn github_legacy_sha1_is_accepted_only_without_the_sha256_header() {
    let sha1 = sign_sha1(SECRET, BODY);
    let only_sha1 = headers(&[("X-Hub-Signature", &sha1)]);
    assert_eq!(verify_github(&only_sha1, BODY.as_bytes(), SECRET), Ok(()));

    // A valid SHA-1 signature does not rescue a bad SHA-256 one.
    let bad256 = format!("sha256={}", "0".repeat(64));
    let both = headers(&[("X-Hub-Signature-256", &bad256), ("X-Hub-Signature", &sha1)]);
    assert_eq!(
        verify_github(&both, BODY.as_bytes(), SECRET),
        Err(SignatureError::Mismatch {
            header: GITHUB_SIGNATURE_256
        })
    );

    let wrong_sha1 = headers(&[("X-Hub-Signature", &sign_sha1("other", BODY))]);
    assert_eq!(
        verify_github(&wrong_sha1, BODY.as_bytes(), SECRET),
        Err(SignatureError::Mismatch {
            header: GITHUB_SIGNATURE_SHA1
        })
    );
}

#[test]
fn github_missing_signature_names_the_sha256_header() {
    let err = verify_github(&headers(&[]), BODY.as_bytes(), SECRET).unwrap_err();
    assert_eq!(
        err,
        SignatureError::Missing {
            header: GITHUB_SIGNATURE_256,
            expected: SHA256_HEX
        }
    );
    assert_eq!(
        err.to_string(),
        "header `X-Hub-Signature-256` is missing; expected `sha256=` followed by 64 lowercase hexadecimal digits"
    );
}

#[test]
fn malformed_values_say_what_was_expected() {
    let good = sign_sha256(SECRET, BODY);
    let cases = [
        good.trim_start_matches("sha256=").to_string(), // no prefix
        format!("sha1={}", &good[7..]),                 // wrong prefix
        good[..good.len() - 2].to_string(),             // too short
        format!("{good}00"),                            // too long
        format!("{}zz", &good[..good.len() - 2]),       // not hex
        String::new(),
    ];
    for value in cases {
        let h = headers(&[("X-Hub-Signature-256", &value)]);
        let err = verify_github(&h, BODY.as_bytes(), SECRET).unwrap_err();
        assert_eq!(
            err,
            SignatureError::Malformed {
                header: GITHUB_SIGNATURE_256,
                expected: SHA256_HEX
            },
            "value {value:?}"
        );
    }
    let h = Headers::new([("X-Hub-Signature-256", &b"sha256=\xff"[..])]);
    assert!(matches!(
        verify_github(&h, BODY.as_bytes(), SECRET),
        Err(SignatureError::Malformed { .. })
    ));
}

#[test]
fn a_repeated_signature_header_is_refused() {
    let good = sign_sha256(SECRET, BODY);
    let h = headers(&[
        ("X-Hub-Signature-256", &good),
        ("x-hub-signature-256", &good),
    ]);
    assert_eq!(
        verify_github(&h, BODY.as_bytes(), SECRET),
        Err(SignatureError::Repeated {
            header: GITHUB_SIGNATURE_256
        })
    );
}

#[test]
fn an_empty_secret_never_verifies() {
    let h = headers(&[("X-Hub-Signature-256", &sign_sha256("", BODY))]);
    assert_eq!(
        verify_github(&h, BODY.as_bytes(), ""),
        Err(SignatureError::NoSecret {
            header: GITHUB_SIGNATURE_256
        })
    );
    let h = headers(&[("X-Gitlab-Token", "")]);
    assert_eq!(
        verify_gitlab(&h, ""),
        Err(SignatureError::NoSecret {
            header: GITLAB_TOKEN
        })
    );
}

#[test]
fn gitlab_token_must_equal_the_secret_whatever_its_length() {
    let ok = headers(&[("X-Gitlab-Token", SECRET)]);
    assert_eq!(verify_gitlab(&ok, SECRET), Ok(()));
    for token in [
        "",
        "It's a Secret",
        "It's a Secret to Everybody!",
        "it's a secret to everybody",
    ] {
        let h = headers(&[("X-Gitlab-Token", token)]);
        assert_eq!(
            verify_gitlab(&h, SECRET),
            Err(SignatureError::Mismatch {
                header: GITLAB_TOKEN
            }),
            "token {token:?}"
        );
    }
    let err = verify_gitlab(&headers(&[]), SECRET).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header `X-Gitlab-Token` is missing; expected the webhook's secret token"
    );
}

#[test]
fn gitlab_errors_never_echo_the_token() {
    let h = headers(&[("X-Gitlab-Token", "hunter2-guess")]);
    let err = verify_gitlab(&h, SECRET).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn gitea_and_forgejo_signatures_are_bare_hex() {
    let sig = hmac_sha256_hex(SECRET, BODY);
    for header in ["X-Gitea-Signature", "X-Forgejo-Signature"] {
        let h = headers(&[(header, &sig)]);
        assert_eq!(
            verify_gitea(&h, BODY.as_bytes(), SECRET),
            Ok(()),
            "{header}"
        );
        assert_eq!(Provider::Gitea.verify(&h, BODY.as_bytes(), SECRET), Ok(()));
        assert_eq!(
            Provider::Forgejo.verify(&h, BODY.as_bytes(), SECRET),
            Ok(())
        );
    }
    // Forgejo sends both; both must hold.
    let both = headers(&[("X-Forgejo-Signature", &sig), ("X-Gitea-Signature", &sig)]);
    assert_eq!(verify_gitea(&both, BODY.as_bytes(), SECRET), Ok(()));
    let one_bad = headers(&[
        ("X-Forgejo-Signature", &sig),
        ("X-Gitea-Signature", &hmac_sha256_hex("other", BODY)),
    ]);
    assert_eq!(
        verify_gitea(&one_bad, BODY.as_bytes(), SECRET),
        Err(SignatureError::Mismatch {
            header: GITEA_SIGNATURE
        })
    );
    let err = verify_gitea(&headers(&[]), BODY.as_bytes(), SECRET).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header `X-Gitea-Signature` or `X-Forgejo-Signature` is missing; expected 64 lowercase hexadecimal digits"
    );
    // GitHub's header alone does not satisfy the Gitea check.
    let hub = headers(&[("X-Hub-Signature-256", &sign_sha256(SECRET, BODY))]);
    assert!(verify_gitea(&hub, BODY.as_bytes(), SECRET).is_err());
}

#[test]
fn gitea_tolerates_a_sha256_prefix() {
    let h = headers(&[("X-Gitea-Signature", &sign_sha256(SECRET, BODY))]);
    assert_eq!(verify_gitea(&h, BODY.as_bytes(), SECRET), Ok(()));
}

#[test]
fn generic_webhook_uses_its_own_header() {
    let value = sign_sha256(SECRET, BODY);
    let h = headers(&[("X-Gantry-Signature-256", &value)]);
    assert_eq!(verify_generic(&h, BODY.as_bytes(), SECRET), Ok(()));
    let github = headers(&[("X-Hub-Signature-256", &value)]);
    assert_eq!(
        verify_generic(&github, BODY.as_bytes(), SECRET),
        Err(SignatureError::Missing {
            header: GANTRY_SIGNATURE_256,
            expected: SHA256_HEX
        })
    );
}

#[test]
fn detect_prefers_the_most_specific_event_header() {
    let detect = |pairs: &[(&str, &str)]| Provider::detect(&headers(pairs));
    assert_eq!(
        detect(&[("X-GitHub-Event", "push")]),
        Some(Provider::GitHub)
    );
    assert_eq!(
        detect(&[("x-gitlab-event", "Push Hook")]),
        Some(Provider::GitLab)
    );
    // Gitea sends X-GitHub-Event too; Forgejo sends Gitea's and GitHub's.
    assert_eq!(
        detect(&[("X-GitHub-Event", "push"), ("X-Gitea-Event", "push")]),
        Some(Provider::Gitea)
    );
    assert_eq!(
        detect(&[
            ("X-GitHub-Event", "push"),
            ("X-Gitea-Event", "push"),
            ("X-Forgejo-Event", "push")
        ]),
        Some(Provider::Forgejo)
    );
    assert_eq!(detect(&[("Content-Type", "application/json")]), None);
    assert_eq!(
        Provider::GitLab.event_kind(&headers(&[("X-Gitlab-Event", " Merge Request Hook ")])),
        Some("Merge Request Hook")
    );
}

fn provider_headers(provider: Provider, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    match provider {
        Provider::GitHub => vec![("X-Hub-Signature-256", sign_sha256(secret, body))],
        Provider::GitLab => vec![("X-Gitlab-Token", secret.to_string())],
        Provider::Gitea => vec![("X-Gitea-Signature", hmac_sha256_hex(secret, body))],
        Provider::Forgejo => vec![("X-Forgejo-Signature", hmac_sha256_hex(secret, body))],
    }
}

fn any_provider() -> impl Strategy<Value = Provider> {
    prop_oneof![
        Just(Provider::GitHub),
        Just(Provider::GitLab),
        Just(Provider::Gitea),
        Just(Provider::Forgejo)
    ]
}

proptest! {
    #[test]
    fn a_signature_made_with_the_secret_always_verifies(
        provider in any_provider(),
        secret in "[ -~]{1,64}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let h = Headers::new(provider_headers(provider, &secret, &body));
        prop_assert_eq!(provider.verify(&h, &body, &secret), Ok(()));
    }

    #[test]
    fn any_changed_body_byte_never_verifies(
        provider in prop_oneof![Just(Provider::GitHub), Just(Provider::Gitea), Just(Provider::Forgejo)],
        secret in "[ -~]{1,64}",
        body in proptest::collection::vec(any::<u8>(), 1..512),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let h = Headers::new(provider_headers(provider, &secret, &body));
        let mut changed = body.clone();
        let i = index.index(changed.len());
        changed[i] ^= flip;
        let result = provider.verify(&h, &changed, &secret);
        prop_assert!(matches!(result, Err(SignatureError::Mismatch { .. })), "{:?}", result);
    }

    #[test]
    fn any_changed_signature_byte_never_verifies(
        provider in any_provider(),
        secret in "[ -~]{1,64}",
        body in proptest::collection::vec(any::<u8>(), 0..256),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut pairs = provider_headers(provider, &secret, &body);
        let mut value = pairs[0].1.clone().into_bytes();
        let i = index.index(value.len());
        value[i] ^= flip;
        let h = Headers::new([(pairs[0].0, value)]);
        pairs.clear();
        prop_assert!(provider.verify(&h, &body, &secret).is_err());
    }
}

#[test]
fn slack_signatures_cover_the_timestamp_and_the_body_and_expire() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
    let at = 1_700_000_000;
    let signed = |ts: &str, sig: String| {
        Headers::new([(SLACK_TIMESTAMP, ts.to_string()), (SLACK_SIGNATURE, sig)])
    };
    let good = signed("1700000000", sign_slack(secret, at, body));
    assert_eq!(verify_slack(&good, body, secret, at + 299), Ok(()));
    assert_eq!(verify_slack(&good, body, secret, at - 299), Ok(()));
    assert!(matches!(
        verify_slack(&good, body, secret, at + 301),
        Err(SignatureError::Stale { seconds: 301, .. })
    ));
    assert!(matches!(
        verify_slack(&good, body, "another secret", at),
        Err(SignatureError::Mismatch { .. })
    ));
    assert!(matches!(
        verify_slack(&good, b"payload=%7B%7D", secret, at),
        Err(SignatureError::Mismatch { .. })
    ));
    // The timestamp is signed: moving it forward breaks the signature.
    let moved = signed("1700000100", sign_slack(secret, at, body));
    assert!(matches!(
        verify_slack(&moved, body, secret, at + 100),
        Err(SignatureError::Mismatch { .. })
    ));
    let no_time = Headers::new([(SLACK_SIGNATURE, sign_slack(secret, at, body))]);
    assert!(matches!(
        verify_slack(&no_time, body, secret, at),
        Err(SignatureError::Missing {
            header: SLACK_TIMESTAMP,
            ..
        })
    ));
    let bad_time = signed("yesterday", sign_slack(secret, at, body));
    assert!(matches!(
        verify_slack(&bad_time, body, secret, at),
        Err(SignatureError::Malformed {
            header: SLACK_TIMESTAMP,
            ..
        })
    ));
    let bad_sig = signed("1700000000", "v1=00".into());
    assert!(matches!(
        verify_slack(&bad_sig, body, secret, at),
        Err(SignatureError::Malformed {
            header: SLACK_SIGNATURE,
            ..
        })
    ));
    assert!(matches!(
        verify_slack(&good, body, "", at),
        Err(SignatureError::NoSecret { .. })
    ));
}
