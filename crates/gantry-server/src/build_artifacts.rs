//! Standalone builds' artifacts in the artifact store.
//!
//! A build whose project's `artifacts.type` is not `NO_ARTIFACTS` writes its
//! artifacts into a directory of the data directory, `artifacts/<build
//! uuid>/` (the embedded agent directly; a remote agent's zip is unpacked
//! into one beside it): the primary artifact's files at the top, each
//! secondary artifact's under its identifier. Before the build's end is
//! recorded, [`keep`] stores each artifact in the artifact store as a
//! content-addressed tree (`put_dir`) and replaces the artifact's
//! `location` in the build with its reference, `sha256:<64 hex>`; the
//! directory is then removed by the caller.
//!
//! So a build's artifacts live where pipeline artifacts do, and every
//! server sharing the artifact store (`--artifact-store s3://...`) reads
//! them, whichever server ran the build or received its agent's result: a
//! pipeline's CodeBuild action takes its output artifacts from these
//! references.

use std::path::{Component, Path, PathBuf};

use gantry_artifacts::{ArtifactRef, ArtifactStore};
use gantry_store::BuildUpdate;
use serde_json::{Value, json};

/// The build's artifact entries: the primary, then the secondaries.
fn entries(build: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(map) = build.as_object_mut() else {
        return out;
    };
    for (name, value) in map.iter_mut() {
        match name.as_str() {
            "artifacts" if value.is_object() => out.push(value),
            "secondaryArtifacts" => {
                if let Some(list) = value.as_array_mut() {
                    out.extend(list.iter_mut());
                }
            }
            _ => {}
        }
    }
    out
}

/// Where an entry's files are: its location is a path under `dir` (the
/// embedded agent's, as the server's data directory was given, absolute or
/// not) or relative to it (a remote agent's); anything that would leave
/// `dir` is no location.
fn resolve(dir: &Path, location: &str) -> Option<PathBuf> {
    let path = Path::new(location);
    let relative = match path.strip_prefix(dir) {
        Ok(relative) => relative,
        Err(_) if path.is_absolute() => return None,
        Err(_) => path,
    };
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(relative))
}

/// Stores each artifact of `build` found under `dir` in `objects` and makes
/// its `location` the reference; an artifact with no files there loses its
/// location (a reader then finds no artifact, as before when the directory
/// was missing). A location that is already a reference stays, so this is
/// safe to repeat. The error names the artifact that could not be stored.
pub(crate) async fn keep(
    objects: &ArtifactStore,
    build: &mut Value,
    dir: &Path,
) -> Result<(), String> {
    for entry in entries(build) {
        let Some(location) = entry.get("location").and_then(Value::as_str) else {
            continue;
        };
        if location.parse::<ArtifactRef>().is_ok() {
            continue;
        }
        let tree = resolve(dir, location).filter(|p| p.is_dir());
        let Some(tree) = tree else {
            if let Some(map) = entry.as_object_mut() {
                map.remove("location");
            }
            continue;
        };
        let label = entry
            .get("artifactIdentifier")
            .and_then(Value::as_str)
            .map_or_else(
                || "the primary artifact".to_owned(),
                |id| format!("artifact {id}"),
            );
        let reference = objects
            .put_dir(&tree)
            .await
            .map_err(|e| format!("storing {label} in the artifact store: {e}"))?;
        entry["location"] = Value::String(reference.to_string());
    }
    Ok(())
}

/// Leaves only locations that are artifact references: a location that is
/// still a path names a directory of some server's disk, which nobody else
/// can read.
pub(crate) fn keep_references(build: &mut Value) {
    for entry in entries(build) {
        let is_ref = entry
            .get("location")
            .and_then(Value::as_str)
            .is_some_and(|l| l.parse::<ArtifactRef>().is_ok());
        if !is_ref && let Some(map) = entry.as_object_mut() {
            map.remove("location");
        }
    }
}

/// [`keep`] for a build that ran here, then the directory removed; a
/// failure to store fails the build in its UPLOAD_ARTIFACTS phase (the
/// artifacts are lost, as when CodeBuild cannot upload them).
pub(crate) async fn keep_or_fail(objects: &ArtifactStore, update: &mut BuildUpdate, dir: &Path) {
    if let Err(message) = keep(objects, &mut update.build, dir).await {
        tracing::error!(dir = %dir.display(), error = %message, "storing a build's artifacts failed");
        keep_references(&mut update.build);
        fail_upload(update, &message);
    }
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a build's artifact directory failed")
        }
    }
}

/// Marks the build FAILED in UPLOAD_ARTIFACTS with `message`.
fn fail_upload(update: &mut BuildUpdate, message: &str) {
    update.status = "FAILED".into();
    update.build["buildStatus"] = json!("FAILED");
    let context = json!({"statusCode": "CLIENT_ERROR", "message": message});
    let phase = update.build["phases"].as_array_mut().and_then(|phases| {
        phases
            .iter_mut()
            .find(|p| p["phaseType"] == "UPLOAD_ARTIFACTS")
    });
    if let Some(phase) = phase {
        phase["phaseStatus"] = json!("FAILED");
        match phase["contexts"].as_array_mut() {
            Some(contexts) => contexts.push(context),
            None => phase["contexts"] = json!([context]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(build: Value) -> BuildUpdate {
        BuildUpdate {
            status: "SUCCEEDED".into(),
            current_phase: "COMPLETED".into(),
            build,
            end_ms: Some(1),
        }
    }

    #[tokio::test]
    async fn each_artifact_becomes_a_reference_and_the_directory_goes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let objects = ArtifactStore::local(tmp.path().join("store")).expect("store");
        let dir = tmp.path().join("artifacts/uuid");
        std::fs::create_dir_all(dir.join("docs")).expect("mkdir");
        std::fs::write(dir.join("app.txt"), "app\n").expect("write");
        std::fs::write(dir.join("docs/index.html"), "<p>\n").expect("write");
        let mut u = update(json!({
            "artifacts": {"location": dir.to_string_lossy()},
            "secondaryArtifacts": [
                {"artifactIdentifier": "docs", "location": "docs"},
                {"artifactIdentifier": "none", "location": "none"},
                {"artifactIdentifier": "out", "location": "../elsewhere"}
            ],
            "phases": [{"phaseType": "UPLOAD_ARTIFACTS", "phaseStatus": "SUCCEEDED"}]
        }));
        keep_or_fail(&objects, &mut u, &dir).await;
        assert_eq!(u.status, "SUCCEEDED");
        assert!(!dir.exists(), "the directory is removed");
        let primary: ArtifactRef = u.build["artifacts"]["location"]
            .as_str()
            .expect("location")
            .parse()
            .expect("a reference");
        let docs: ArtifactRef = u.build["secondaryArtifacts"][0]["location"]
            .as_str()
            .expect("location")
            .parse()
            .expect("a reference");
        let out = tmp.path().join("out");
        objects.materialize(&docs, &out).await.expect("materialize");
        assert_eq!(
            std::fs::read_to_string(out.join("index.html")).expect("read"),
            "<p>\n"
        );
        let paths: Vec<String> = objects
            .manifest(&primary)
            .await
            .expect("manifest")
            .entries
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["app.txt", "docs", "docs/index.html"]);
        // No files, or a path leaving the directory: no location.
        assert!(u.build["secondaryArtifacts"][1].get("location").is_none());
        assert!(u.build["secondaryArtifacts"][2].get("location").is_none());
        // Again (a reference stays as it is).
        let before = u.build.clone();
        keep(&objects, &mut u.build, &dir).await.expect("again");
        assert_eq!(u.build, before);
    }

    #[tokio::test]
    async fn a_store_that_fails_fails_the_build_in_upload_artifacts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let objects = ArtifactStore::local(tmp.path().join("store")).expect("store");
        // A file where the store's directory was: every write fails.
        std::fs::remove_dir(tmp.path().join("store")).expect("rmdir");
        std::fs::write(tmp.path().join("store"), "not a directory").expect("write");
        let dir = tmp.path().join("artifacts/uuid");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("app.txt"), "app\n").expect("write");
        let mut u = update(json!({
            "buildStatus": "SUCCEEDED",
            "artifacts": {"location": ""},
            "phases": [{"phaseType": "UPLOAD_ARTIFACTS", "phaseStatus": "SUCCEEDED"}]
        }));
        keep_or_fail(&objects, &mut u, &dir).await;
        assert_eq!(u.status, "FAILED");
        assert_eq!(u.build["buildStatus"], "FAILED");
        assert_eq!(u.build["phases"][0]["phaseStatus"], "FAILED");
        let message = u.build["phases"][0]["contexts"][0]["message"]
            .as_str()
            .expect("message");
        assert!(message.contains("primary artifact"), "{message}");
        assert!(u.build["artifacts"].get("location").is_none());
    }

    #[test]
    fn locations_resolve_inside_the_directory_only() {
        let dir = Path::new("gantry-data/artifacts/u");
        assert_eq!(resolve(dir, "gantry-data/artifacts/u"), Some(dir.join("")));
        assert_eq!(
            resolve(dir, "gantry-data/artifacts/u/docs"),
            Some(dir.join("docs"))
        );
        assert_eq!(resolve(dir, ""), Some(dir.join("")));
        assert_eq!(resolve(dir, "docs"), Some(dir.join("docs")));
        assert_eq!(resolve(dir, "/etc"), None);
        assert_eq!(resolve(dir, "../x"), None);
        assert_eq!(resolve(dir, "docs/../../x"), None);
        let abs = Path::new("/var/lib/gantry/artifacts/u");
        assert_eq!(
            resolve(abs, "/var/lib/gantry/artifacts/u/docs"),
            Some(abs.join("docs"))
        );
        assert_eq!(resolve(abs, "/var/lib/gantry/artifacts/v"), None);
    }

    #[test]
    fn only_references_survive_as_locations() {
        let reference = format!("sha256:{}", "a".repeat(64));
        let mut build = json!({
            "artifacts": {"location": "/var/lib/gantry/artifacts/x"},
            "secondaryArtifacts": [{"artifactIdentifier": "a", "location": reference}]
        });
        keep_references(&mut build);
        assert!(build["artifacts"].get("location").is_none());
        assert_eq!(build["secondaryArtifacts"][0]["location"], reference);
    }
}
