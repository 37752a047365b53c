//! Each format read from a realistic sample under `tests/data/`, malformed
//! inputs giving errors, and random bytes never panicking.

use std::path::{Path, PathBuf};

use gantry_reports::{
    CoverageReport, ReportError, TestReport, TestStatus, parse_coverage, parse_coverage_file,
    parse_report, parse_report_file,
};
use gantry_spec::buildspec::ReportFormat;
use proptest::prelude::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn report(format: ReportFormat, name: &str) -> TestReport {
    parse_report_file(format, &data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn coverage(format: ReportFormat, name: &str) -> CoverageReport {
    parse_coverage_file(format, &data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn statuses(r: &TestReport) -> Vec<TestStatus> {
    r.cases.iter().map(|c| c.status).collect()
}

fn counts(r: &TestReport) -> [u64; 5] {
    let s = r.summary();
    TestStatus::ALL.map(|st| s.status_counts[st.as_str()])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn junit_testsuites_root_with_nested_suites() {
    use TestStatus::*;
    let r = report(ReportFormat::JunitXml, "junit-testsuites.xml");
    assert_eq!(
        statuses(&r),
        [Succeeded, Failed, Skipped, Succeeded, Error, Succeeded]
    );
    let names: Vec<(&str, &str, &str)> = r
        .cases
        .iter()
        .map(|c| (c.suite.as_str(), c.prefix.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(names[0], ("cart", "shop.CartTest", "adds an item"));
    assert_eq!(
        names[4],
        ("checkout.payment", "shop.PaymentTest", "refunds & voids")
    );
    assert_eq!(names[5], ("checkout", "shop.CheckoutTest", "shows total"));
    assert_eq!(r.cases[1].message.as_deref(), Some("expected 0 but was 1"));
    assert_eq!(r.cases[2].message.as_deref(), Some("coupon service down"));
    assert!(
        r.cases[4]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("java.lang.NullPointerException"))
    );
    assert_eq!(r.cases[1].duration_ns, 1_000_000_000);
    let s = r.summary();
    assert_eq!(s.total, 6);
    assert_eq!(counts(&r), [3, 1, 1, 1, 0]);
    assert_eq!(s.duration_ns, 1_875_000_000);
}

#[test]
fn junit_single_testsuite_root() {
    use TestStatus::*;
    let r = report(ReportFormat::JunitXml, "junit-testsuite.xml");
    assert_eq!(statuses(&r), [Succeeded, Failed, Skipped]);
    assert!(r.cases.iter().all(|c| c.suite == "tests.test_api"));
    assert_eq!(r.cases[1].message.as_deref(), Some("assert 500 == 201"));
    assert_eq!(r.cases[2].message.as_deref(), Some("not implemented"));
    assert_eq!(r.summary().duration_ns, 42_000_000);
}

#[test]
fn nunit2() {
    use TestStatus::*;
    let r = report(ReportFormat::NunitXml, "nunit2.xml");
    assert_eq!(statuses(&r), [Succeeded, Failed, Error, Skipped, Succeeded]);
    assert!(r.cases.iter().all(|c| c.suite == "CalculatorTests"));
    assert!(r.cases.iter().all(|c| c.prefix == "Calc.CalculatorTests"));
    assert_eq!(r.cases[4].name, "Calc.CalculatorTests.Squares(1.5)");
    assert_eq!(
        r.cases[1].message.as_deref(),
        Some("Expected: 2\n  But was:  3")
    );
    assert_eq!(r.cases[3].message.as_deref(), Some("not yet"));
    assert_eq!(r.cases[1].duration_ns, 34_000_000);
}

#[test]
fn nunit3() {
    use TestStatus::*;
    let r = report(ReportFormat::Nunit3Xml, "nunit3.xml");
    assert_eq!(statuses(&r), [Succeeded, Failed, Error, Skipped, Succeeded]);
    assert!(r.cases.iter().all(|c| c.suite == "CartTests"));
    assert!(r.cases.iter().all(|c| c.prefix == "Shop.CartTests"));
    assert_eq!(r.cases[3].message.as_deref(), Some("coupon API pending"));
    assert_eq!(r.summary().duration_ns, 680_000_000);
}

#[test]
fn testng_skips_configuration_methods() {
    use TestStatus::*;
    let r = report(ReportFormat::TestngXml, "testng-results.xml");
    assert_eq!(statuses(&r), [Succeeded, Failed, Succeeded, Skipped]);
    assert_eq!(r.cases[1].prefix, "com.acme.inventory.StockTest");
    assert_eq!(r.cases[1].suite, "Inventory");
    assert_eq!(
        r.cases[1].message.as_deref(),
        Some("expected [3] but found [2]")
    );
    assert_eq!(r.cases[3].message.as_deref(), Some("export disabled"));
    assert_eq!(r.summary().duration_ns, 1_650_000_000);
}

#[test]
fn visual_studio_trx() {
    use TestStatus::*;
    let r = report(ReportFormat::VisualStudioTrx, "results.trx");
    assert_eq!(statuses(&r), [Succeeded, Failed, Skipped]);
    assert_eq!(r.cases[0].duration_ns, 12_345_600);
    assert_eq!(r.cases[1].suite, "Parser.Tests.ParserTests");
    assert_eq!(r.cases[2].suite, "Parser.Tests.UnicodeTests");
    assert!(
        r.cases[1]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Assert.Equal() Failure"))
    );
}

#[test]
fn trx_in_utf16_is_read() {
    let text = std::fs::read_to_string(data("results.trx")).expect("read");
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.replace("utf-8", "utf-16").encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let r = parse_report(ReportFormat::VisualStudioTrx, &bytes).expect("utf-16 trx");
    assert_eq!(r.cases.len(), 3);
}

#[test]
fn cucumber_json() {
    use TestStatus::*;
    let r = report(ReportFormat::CucumberJson, "cucumber.json");
    assert_eq!(statuses(&r), [Succeeded, Failed, Skipped, Error]);
    assert_eq!(r.cases[0].suite, "Login");
    assert_eq!(r.cases[0].prefix, "features/login.feature");
    // Background (1 ms) + before hook (0.5 ms) + steps (23 ms).
    assert_eq!(r.cases[0].duration_ns, 24_500_000);
    assert!(
        r.cases[1]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Invalid password"))
    );
    assert_eq!(counts(&r), [1, 1, 1, 1, 0]);
}

#[test]
fn clover() {
    let c = coverage(ReportFormat::CloverXml, "clover.xml");
    assert_eq!((c.lines_covered, c.lines_missed), (15, 5));
    assert!(close(c.line_coverage_percent, 75.0));
    assert_eq!((c.branches_covered, c.branches_missed), (Some(6), Some(2)));
    assert!(close(c.branch_coverage_percent.expect("branches"), 75.0));
    assert_eq!(c.files.len(), 2);
    let cart = &c.files[0];
    assert_eq!(cart.path, "/build/src/cart.js");
    assert_eq!((cart.lines_covered, cart.lines_missed), (10, 2));
    // util.js has no <metrics>: counted from its <line>s.
    let util = &c.files[1];
    assert_eq!((util.lines_covered, util.lines_missed), (1, 2));
    assert_eq!(
        (util.branches_covered, util.branches_missed),
        (Some(1), Some(1))
    );
}

#[test]
fn clover_without_conditionals_has_no_branch_figures() {
    let xml = br#"<coverage><project><metrics statements="4" coveredstatements="1" conditionals="0" coveredconditionals="0"/></project></coverage>"#;
    let c = parse_coverage(ReportFormat::CloverXml, xml).expect("clover");
    assert!(close(c.line_coverage_percent, 25.0));
    assert_eq!(c.branch_coverage_percent, None);
}

#[test]
fn cobertura() {
    let c = coverage(ReportFormat::CoberturaXml, "cobertura.xml");
    assert_eq!((c.lines_covered, c.lines_missed), (6, 3));
    assert_eq!((c.branches_covered, c.branches_missed), (Some(3), Some(1)));
    assert_eq!(c.files.len(), 2);
    let pay = &c.files[1];
    assert_eq!(pay.path, "shop/pay.py");
    // Lines 1, 2 (covered by the inner class), 3, 9.
    assert_eq!((pay.lines_covered, pay.lines_missed), (2, 2));
    assert_eq!(
        (pay.branches_covered, pay.branches_missed),
        (Some(2), Some(0))
    );
}

#[test]
fn cobertura_without_totals_adds_up_files() {
    let xml = br#"<coverage line-rate="0.5"><packages><package name="p"><classes>
        <class filename="a.py"><lines><line number="1" hits="1"/><line number="2" hits="0"/></lines></class>
        </classes></package></packages></coverage>"#;
    let c = parse_coverage(ReportFormat::CoberturaXml, xml).expect("cobertura");
    assert_eq!((c.lines_covered, c.lines_missed), (1, 1));
    assert_eq!(c.branches_covered, None);
}

#[test]
fn jacoco() {
    let c = coverage(ReportFormat::JacocoXml, "jacoco.xml");
    assert_eq!((c.lines_covered, c.lines_missed), (5, 4));
    assert!(close(c.line_coverage_percent, 5.0 * 100.0 / 9.0));
    assert_eq!((c.branches_covered, c.branches_missed), (Some(3), Some(1)));
    let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "com/acme/inventory/Audit.java",
            "com/acme/inventory/Stock.java"
        ]
    );
    assert_eq!(c.files[0].branches_covered, None);
}

#[test]
fn simplecov_resultset_merges_commands() {
    let c = coverage(ReportFormat::SimpleCov, "simplecov-resultset.json");
    let cart = &c.files[0];
    assert_eq!(cart.path, "/build/lib/cart.rb");
    // Merged hits: [2, 1, -, 3, 0, -, 2, -]: 4 covered, 1 missed.
    assert_eq!((cart.lines_covered, cart.lines_missed), (4, 1));
    assert_eq!(
        (cart.branches_covered, cart.branches_missed),
        (Some(2), Some(0))
    );
    let pay = &c.files[1];
    assert_eq!((pay.lines_covered, pay.lines_missed), (1, 2));
    assert_eq!(pay.branches_covered, None);
    assert_eq!((c.lines_covered, c.lines_missed), (5, 3));
}

#[test]
fn simplecov_legacy_line_arrays() {
    let c = coverage(ReportFormat::SimpleCov, "simplecov-legacy.json");
    assert_eq!((c.lines_covered, c.lines_missed), (3, 1));
    assert!(close(c.line_coverage_percent, 75.0));
}

#[test]
fn wrong_kind_of_format_is_an_error() {
    assert!(matches!(
        parse_report(ReportFormat::JacocoXml, b"<report/>"),
        Err(ReportError::NotTestFormat("JACOCOXML"))
    ));
    assert!(matches!(
        parse_coverage(ReportFormat::JunitXml, b"<testsuite/>"),
        Err(ReportError::NotCoverageFormat("JUNITXML"))
    ));
}

#[test]
fn a_file_read_as_the_wrong_format_says_so() {
    let bytes = std::fs::read(data("junit-testsuite.xml")).expect("read");
    for format in [
        ReportFormat::NunitXml,
        ReportFormat::Nunit3Xml,
        ReportFormat::TestngXml,
        ReportFormat::VisualStudioTrx,
    ] {
        let err = parse_report(format, &bytes).expect_err(format.as_str());
        assert!(
            matches!(err, ReportError::WrongFormat { .. }),
            "{format:?}: {err}"
        );
        assert!(err.to_string().contains("<testsuite>"), "{err}");
    }
    let err = parse_report(ReportFormat::CucumberJson, b"{}").expect_err("object");
    assert!(matches!(err, ReportError::WrongFormat { .. }), "{err}");
    let err = parse_coverage(ReportFormat::SimpleCov, b"[]").expect_err("array");
    assert!(matches!(err, ReportError::WrongFormat { .. }), "{err}");
    let err = parse_coverage(ReportFormat::CoberturaXml, b"<report/>").expect_err("jacoco");
    assert!(matches!(err, ReportError::WrongFormat { .. }), "{err}");
}

#[test]
fn malformed_inputs_are_errors() {
    let xml_cases: &[&[u8]] = &[
        b"",
        b"<testsuite>",
        b"<testsuite><testcase></testsuite>",
        b"<testsuite/><testsuite/>",
        b"not xml at all",
        b"<testsuite name='a\x00'",
    ];
    for bytes in xml_cases {
        let err =
            parse_report(ReportFormat::JunitXml, bytes).expect_err(&String::from_utf8_lossy(bytes));
        assert!(matches!(err, ReportError::Xml { .. }), "{err}");
    }
    let err = parse_report(ReportFormat::CucumberJson, b"[{\"name\": ").expect_err("json");
    match err {
        ReportError::Json { line, column, .. } => assert_eq!((line, column), (1, 10)),
        other => panic!("{other}"),
    }
    let err = parse_report(ReportFormat::CucumberJson, b"[{\"elements\": 3}]").expect_err("shape");
    assert!(matches!(err, ReportError::Json { .. }), "{err}");
}

#[test]
fn file_errors_name_the_file() {
    let missing = data("no-such-file.xml");
    let err = parse_report_file(ReportFormat::JunitXml, &missing).expect_err("missing");
    assert!(err.to_string().contains("no-such-file.xml"), "{err}");
    let dir = std::env::temp_dir().join(format!("gantry-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bad = dir.join("bad.xml");
    std::fs::write(&bad, "<testsuite>").expect("write");
    let err = parse_report_file(ReportFormat::JunitXml, &bad).expect_err("bad");
    let text = err.to_string();
    assert!(
        text.contains("bad.xml") && text.contains("malformed XML"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_xml_is_refused_or_read_without_expansion() {
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE testsuite [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<testsuite name="&c;"><testcase name="&xxe;"><failure>&c;</failure></testcase></testsuite>"#;
    let r = parse_report(ReportFormat::JunitXml, bomb).expect("read without expansion");
    assert_eq!(r.cases[0].name, "&xxe;");
    assert_eq!(r.cases[0].suite, "&c;");
    let deep = "<testsuite>".repeat(10_000);
    assert!(matches!(
        parse_report(ReportFormat::JunitXml, deep.as_bytes()),
        Err(ReportError::TooDeep { .. })
    ));
    let deep_json = "[".repeat(10_000);
    assert!(parse_report(ReportFormat::CucumberJson, deep_json.as_bytes()).is_err());
    assert!(parse_coverage(ReportFormat::SimpleCov, deep_json.as_bytes()).is_err());
}

#[test]
fn summary_always_has_all_five_statuses() {
    let r = report(ReportFormat::JunitXml, "junit-testsuite.xml");
    let keys: Vec<String> = r.summary().status_counts.into_keys().collect();
    assert_eq!(keys, ["ERROR", "FAILED", "SKIPPED", "SUCCEEDED", "UNKNOWN"]);
}

fn mutate(seed: &[u8], cuts: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, b) in cuts {
        if bytes.is_empty() {
            break;
        }
        let i = at % bytes.len();
        match b % 3 {
            0 => bytes[i] = b,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

const SAMPLES: &[(&str, ReportFormat)] = &[
    ("junit-testsuites.xml", ReportFormat::JunitXml),
    ("nunit2.xml", ReportFormat::NunitXml),
    ("nunit3.xml", ReportFormat::Nunit3Xml),
    ("testng-results.xml", ReportFormat::TestngXml),
    ("results.trx", ReportFormat::VisualStudioTrx),
    ("cucumber.json", ReportFormat::CucumberJson),
    ("clover.xml", ReportFormat::CloverXml),
    ("cobertura.xml", ReportFormat::CoberturaXml),
    ("jacoco.xml", ReportFormat::JacocoXml),
    ("simplecov-resultset.json", ReportFormat::SimpleCov),
];

fn read_any(format: ReportFormat, bytes: &[u8]) {
    if format.is_coverage() {
        let _ = parse_coverage(format, bytes);
    } else {
        let _ = parse_report(format, bytes);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        format in prop::sample::select(ReportFormat::ALL.to_vec()),
    ) {
        read_any(format, &bytes);
    }

    #[test]
    fn mutated_samples_never_panic(
        sample in prop::sample::select(SAMPLES.to_vec()),
        cuts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let (name, format) = sample;
        let seed = std::fs::read(data(name)).expect("sample");
        read_any(format, &mutate(&seed, &cuts));
    }
}
