//! AWS's published Signature Version 4 test suite (the 2015 edition: region
//! `us-east-1`, service `service`, `AKIDEXAMPLE`, 2015-08-30T12:36:00Z),
//! re-created case by case. For each case the expected canonical URI, query
//! and signature are the suite's; the test checks that
//!
//! 1. the canonical request we build has exactly the suite's shape,
//! 2. `verify` accepts the request carrying the suite's signature, and
//! 3. `sign` produces the suite's `Authorization` header from the bare request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_aws::{
    AuthError, Credentials, RequestParts, SecretKey, SigningParams, Verifier, VerifyOptions,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20150830T123600Z";
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn suite_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    /// Headers besides Host and X-Amz-Date, in the order sent.
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    canonical_uri: &'static str,
    canonical_query: &'static str,
    /// The canonical header lines besides host and x-amz-date, sorted.
    canonical_extra: &'static [&'static str],
    signed_headers: &'static str,
    signature: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "get-vanilla",
        method: "GET",
        target: "/",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Case {
        name: "post-vanilla",
        method: "POST",
        target: "/",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Case {
        name: "get-vanilla-empty-query-key",
        method: "GET",
        target: "/?Param1=value1",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "Param1=value1",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    },
    Case {
        name: "get-vanilla-query-order-key",
        method: "GET",
        target: "/?Param1=value2&Param1=Value1",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "Param1=Value1&Param1=value2",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    },
    Case {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        target: "/?Param2=value2&Param1=value1",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "Param1=value1&Param2=value2",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Case {
        name: "get-vanilla-query-order-value",
        method: "GET",
        target: "/?Param1=value2&Param1=value1",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "Param1=value1&Param1=value2",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    },
    Case {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        target: "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    Case {
        name: "get-vanilla-utf8-query",
        method: "GET",
        target: "/?\u{1234}=bar",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "%E1%88%B4=bar",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    Case {
        name: "get-unreserved",
        method: "GET",
        target: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        body: "",
        canonical_uri: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    Case {
        name: "get-utf8",
        method: "GET",
        target: "/\u{1234}",
        headers: &[],
        body: "",
        canonical_uri: "/%E1%88%B4",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    Case {
        name: "normalize-path/get-relative",
        method: "GET",
        target: "/example/..",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Case {
        name: "normalize-path/get-relative-relative",
        method: "GET",
        target: "/example1/example2/../..",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Case {
        name: "normalize-path/get-slash",
        method: "GET",
        target: "//",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Case {
        name: "normalize-path/get-slash-dot-slash",
        method: "GET",
        target: "/./",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Case {
        name: "normalize-path/get-slash-pointless-dot",
        method: "GET",
        target: "/./example",
        headers: &[],
        body: "",
        canonical_uri: "/example",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
    },
    Case {
        name: "normalize-path/get-slashes",
        method: "GET",
        target: "//example//",
        headers: &[],
        body: "",
        canonical_uri: "/example/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    },
    Case {
        name: "normalize-path/get-space",
        method: "GET",
        target: "/example space/",
        headers: &[],
        body: "",
        canonical_uri: "/example%20space/",
        canonical_query: "",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    Case {
        name: "get-header-key-duplicate",
        method: "GET",
        target: "/",
        headers: &[
            ("My-Header1", "value2"),
            ("My-Header1", "value2"),
            ("My-Header1", "value1"),
        ],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["my-header1:value2,value2,value1"],
        signed_headers: "host;my-header1;x-amz-date",
        signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
    Case {
        name: "get-header-value-order",
        method: "GET",
        target: "/",
        headers: &[
            ("My-Header1", "value4"),
            ("My-Header1", "value1"),
            ("My-Header1", "value3"),
            ("My-Header1", "value2"),
        ],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["my-header1:value4,value1,value3,value2"],
        signed_headers: "host;my-header1;x-amz-date",
        signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    },
    Case {
        name: "get-header-value-trim",
        method: "GET",
        target: "/",
        headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["my-header1:value1", "my-header2:\"a b c\""],
        signed_headers: "host;my-header1;my-header2;x-amz-date",
        signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    Case {
        name: "post-header-key-sort",
        method: "POST",
        target: "/",
        headers: &[("My-Header1", "value1")],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["my-header1:value1"],
        signed_headers: "host;my-header1;x-amz-date",
        signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    },
    Case {
        name: "post-header-value-case",
        method: "POST",
        target: "/",
        headers: &[("My-Header1", "VALUE1")],
        body: "",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["my-header1:VALUE1"],
        signed_headers: "host;my-header1;x-amz-date",
        signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    },
    Case {
        name: "post-vanilla-query",
        method: "POST",
        target: "/?Param1=value1",
        headers: &[],
        body: "",
        canonical_uri: "/",
        canonical_query: "Param1=value1",
        canonical_extra: &[],
        signed_headers: "host;x-amz-date",
        signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    Case {
        name: "post-x-www-form-urlencoded",
        method: "POST",
        target: "/",
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: "Param1=value1",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["content-type:application/x-www-form-urlencoded"],
        signed_headers: "content-type;host;x-amz-date",
        signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    },
    Case {
        name: "post-x-www-form-urlencoded-parameters",
        method: "POST",
        target: "/",
        headers: &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf8",
        )],
        body: "Param1=value1",
        canonical_uri: "/",
        canonical_query: "",
        canonical_extra: &["content-type:application/x-www-form-urlencoded; charset=utf8"],
        signed_headers: "content-type;host;x-amz-date",
        signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    },
];

fn authorization(case: &Case) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={}",
        case.signed_headers, case.signature
    )
}

fn bare(case: &Case) -> RequestParts<'static> {
    let mut req = RequestParts::new(case.method, case.target)
        .header("Host", "example.amazonaws.com")
        .body(case.body.as_bytes());
    for (name, value) in case.headers {
        req = req.header(name, *value);
    }
    req
}

fn expected_canonical(case: &Case) -> String {
    let mut lines: Vec<String> = case.canonical_extra.iter().map(|s| s.to_string()).collect();
    lines.push("host:example.amazonaws.com".into());
    lines.push(format!("x-amz-date:{DATE}"));
    lines.sort();
    let hash = gantry_aws::sha256_hex(case.body.as_bytes());
    format!(
        "{}\n{}\n{}\n{}\n\n{}\n{hash}",
        case.method,
        case.canonical_uri,
        case.canonical_query,
        lines.join("\n"),
        case.signed_headers
    )
}

fn lookup(id: &str) -> Option<SecretKey> {
    (id == "AKIDEXAMPLE").then(|| SecretKey::new(SECRET))
}

#[test]
fn every_case_builds_the_suite_canonical_request() {
    for case in CASES {
        let auth = authorization(case);
        let req = bare(case)
            .header("X-Amz-Date", DATE)
            .header("Authorization", &auth);
        let creq = gantry_aws::debug::canonical_request(&req);
        assert_eq!(
            creq.as_deref(),
            Ok(expected_canonical(case).as_str()),
            "{}",
            case.name
        );
        let sts = gantry_aws::debug::string_to_sign(&req);
        let expected_sts = format!(
            "AWS4-HMAC-SHA256\n{DATE}\n20150830/us-east-1/service/aws4_request\n{}",
            gantry_aws::sha256_hex(expected_canonical(case).as_bytes())
        );
        assert_eq!(sts.as_deref(), Ok(expected_sts.as_str()), "{}", case.name);
    }
}

#[test]
fn every_case_verifies() {
    let verifier = Verifier::new(VerifyOptions::default());
    for case in CASES {
        let auth = authorization(case);
        let req = bare(case)
            .header("X-Amz-Date", DATE)
            .header("Authorization", &auth);
        let caller = verifier.verify(&req, suite_time(), lookup);
        let caller = caller.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            (
                caller.access_key_id.as_str(),
                caller.region.as_str(),
                caller.service.as_str()
            ),
            ("AKIDEXAMPLE", "us-east-1", "service"),
            "{}",
            case.name
        );
        assert!(caller.payload_signed && !caller.presigned);
    }
}

#[test]
fn every_case_signs_to_the_suite_authorization() {
    let creds = Credentials::new("AKIDEXAMPLE", SECRET);
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service: "service",
        time: suite_time(),
    };
    for case in CASES {
        let signed = gantry_aws::sign(&bare(case), &params);
        let signed = signed.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(signed.x_amz_date, DATE);
        assert_eq!(signed.authorization, authorization(case), "{}", case.name);
    }
}

#[test]
fn the_session_token_case_signs_but_is_refused() {
    // post-sts-token/post-sts-header-before: the token is an ordinary signed header.
    const TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    let creds = Credentials::new("AKIDEXAMPLE", SECRET);
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service: "service",
        time: suite_time(),
    };
    let bare = RequestParts::new("POST", "/")
        .header("Host", "example.amazonaws.com")
        .header("X-Amz-Security-Token", TOKEN);
    let signed = gantry_aws::sign(&bare, &params).map(|s| s.authorization);
    assert_eq!(
        signed.as_deref(),
        Ok(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        )
    );
    let auth = signed.unwrap_or_default();
    let req = bare
        .header("X-Amz-Date", DATE)
        .header("Authorization", &auth);
    assert_eq!(
        gantry_aws::verify(&req, suite_time(), lookup),
        Err(AuthError::SessionTokenNotAccepted)
    );
}

#[test]
fn the_date_header_may_replace_x_amz_date() {
    let auth = authorization(&CASES[0]);
    let dated = RequestParts::new("GET", "/")
        .header("Host", "example.amazonaws.com")
        .header("Date", "Sun, 30 Aug 2015 12:36:00 GMT");
    // get-vanilla's header signs x-amz-date, which this request lacks.
    let req = dated.clone().header("Authorization", &auth);
    assert!(matches!(
        gantry_aws::verify(&req, suite_time(), lookup),
        Err(AuthError::Incomplete(_))
    ));
    // Signing `date;host` instead: the string to sign carries the ISO form.
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=date;host, Signature=0000000000000000000000000000000000000000000000000000000000000000";
    let req = dated.header("Authorization", auth);
    let canonical = format!(
        "GET\n/\n\ndate:Sun, 30 Aug 2015 12:36:00 GMT\nhost:example.amazonaws.com\n\ndate;host\n{EMPTY}"
    );
    assert_eq!(
        gantry_aws::debug::canonical_request(&req).as_deref(),
        Ok(canonical.as_str())
    );
    let sts = gantry_aws::debug::string_to_sign(&req).unwrap_or_default();
    assert!(
        sts.starts_with(&format!("AWS4-HMAC-SHA256\n{DATE}\n")),
        "{sts}"
    );
    assert_eq!(
        gantry_aws::verify(&req, suite_time(), lookup),
        Err(AuthError::SignatureMismatch)
    );
}
