//! UPLOAD_ARTIFACTS: artifact files and names, reports.

use gantry_build::{PhaseStatus, PhaseType};

use crate::harness::Harness;

fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

on_every_executor!(
    artifacts_are_written_with_their_layout,
    async |h: Harness| {
        let out = tempfile::tempdir().unwrap();
        let mut options = h.options();
        options.artifacts_dir = Some(out.path().to_path_buf());
        let run = h
        .run_with(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p target/lib docs\n      - echo a > target/app.jar\n      - echo b > target/lib/dep.jar\n      - echo c > docs/guide.md\nartifacts:\n  files: ['**/*']\n  base-directory: target\n  name: app-$CODEBUILD_BUILD_NUMBER-$(echo x)\n  secondary-artifacts:\n    docs:\n      files: ['docs/*']\n      discard-paths: yes\n",
            options,
        )
        .await;
        assert_eq!(
            run.phase(PhaseType::UploadArtifacts),
            Some(PhaseStatus::Succeeded),
            "{}",
            run.log()
        );
        assert_eq!(
            tree(out.path()),
            vec!["app.jar", "docs/guide.md", "lib/dep.jar"]
        );
        let primary = run.result.artifacts.as_ref().unwrap();
        assert_eq!(primary.files, vec!["app.jar", "lib/dep.jar"]);
        assert_eq!(primary.name.as_deref(), Some("app-1-x"));
        assert_eq!(
            run.result.secondary_artifacts[0]
                .artifact_identifier
                .as_deref(),
            Some("docs")
        );
        assert_eq!(run.result.secondary_artifacts[0].files, vec!["guide.md"]);
    }
);

on_every_executor!(no_matching_artifact_fails_the_upload, async |h: Harness| {
    let run = h.run("version: 0.2\nphases:\n  build:\n    commands: ['true']\nartifacts:\n  files: ['dist/**/*']\n").await;
    assert_eq!(
        run.phase(PhaseType::UploadArtifacts),
        Some(PhaseStatus::Failed)
    );
    assert_eq!(run.status(), PhaseStatus::Failed);
    assert!(
        run.log().contains("no matching artifact paths found"),
        "{}",
        run.log()
    );
});

const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="4" failures="1" errors="1" skipped="1">
    <testcase classname="a" name="passes" time="0.5"/>
    <testcase classname="a" name="fails" time="0.25"><failure message="boom">trace</failure></testcase>
    <testcase classname="a" name="errors"><error message="oops"/></testcase>
    <testcase classname="a" name="skipped"><skipped/></testcase>
  </testsuite>
</testsuites>
"#;

on_every_executor!(
    junit_reports_are_summarised_even_when_the_build_fails,
    async |h: Harness| {
        let spec = format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p reports\n      - |\n        cat > reports/junit.xml <<'XML'\n{}        XML\n      - 'false'\nreports:\n  unit-tests:\n    files: ['reports/*.xml']\n    file-format: junitxml\n",
            JUNIT
                .lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>()
        );
        let run = h.run(&spec).await;
        assert_eq!(run.status(), PhaseStatus::Failed);
        let report = run
            .result
            .reports
            .iter()
            .find(|r| r.name == "local-unit-tests")
            .unwrap_or_else(|| panic!("{:?}\n{}", run.result.reports, run.log()));
        assert_eq!(report.file_format, "JUNITXML");
        let summary = report.test_summary.as_ref().expect("test summary");
        assert_eq!(summary.total, 4);
        for (status, count) in [
            ("SUCCEEDED", 1),
            ("FAILED", 1),
            ("ERROR", 1),
            ("SKIPPED", 1),
            ("UNKNOWN", 0),
        ] {
            assert_eq!(summary.status_counts.get(status), Some(&count), "{status}");
        }
    }
);
