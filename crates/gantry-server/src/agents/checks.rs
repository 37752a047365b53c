//! What every waiting build checks each second — its agent job's row, and
//! whether this server still owns the build — read for all of them at once:
//! one query for the jobs, one for the builds this server owns, at most
//! every [`EVERY`], shared by every build that asks meanwhile. With a
//! thousand builds queued, checking one build at a time was two thousand
//! reads a second, more database work than running the builds.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gantry_store::{JobState, OwnedWork, Store};
use tokio::time::Instant;

/// How old a snapshot may be.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// What a snapshot says about one job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JobCheck {
    /// Its row as read.
    Row(JobState),
    /// It was looked for and is not in the store.
    Gone,
    /// Not looked for (it was queued after the read) or the read failed.
    Unknown,
}

#[derive(Default)]
struct Snapshot {
    /// When its reads began; `None` before the first.
    began: Option<Instant>,
    /// The jobs looked for, and the rows found.
    asked: HashSet<String>,
    jobs: HashMap<String, JobState>,
    /// The unfinished builds this server owns, when known.
    owned: Option<HashSet<String>>,
}

/// The shared snapshot.
#[derive(Default)]
pub(crate) struct WaitChecks {
    snapshot: tokio::sync::Mutex<Snapshot>,
}

impl WaitChecks {
    /// Reads the snapshot again when it is older than [`EVERY`]: the rows
    /// of `jobs` (the jobs this server waits for) and the builds this
    /// server owns. Callers at the same moment share one read.
    async fn fresh<S: Store>(
        &self,
        store: &S,
        jobs: impl FnOnce() -> Vec<String>,
    ) -> tokio::sync::MutexGuard<'_, Snapshot> {
        let mut snapshot = self.snapshot.lock().await;
        if snapshot.began.is_some_and(|t| t.elapsed() < EVERY) {
            return snapshot;
        }
        let began = Instant::now();
        let asked: HashSet<String> = jobs().into_iter().collect();
        let ids: Vec<String> = asked.iter().cloned().collect();
        let rows = match store.job_states(&ids).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::warn!(error = %e, "reading the states of waiting agent jobs failed");
                None
            }
        };
        let owned = match store.server_id() {
            Some(me) => match store.owned(OwnedWork::Builds, &me).await {
                Ok(builds) => Some(builds.into_iter().collect()),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the builds this server owns failed");
                    None
                }
            },
            None => None,
        };
        *snapshot = Snapshot {
            began: Some(began),
            // A failed read asked nothing: every job is Unknown, not Gone.
            asked: if rows.is_some() {
                asked
            } else {
                HashSet::new()
            },
            jobs: rows
                .into_iter()
                .flatten()
                .map(|r| (r.id.clone(), r))
                .collect(),
            owned,
        };
        snapshot
    }

    /// Job `job_id`'s state as of at most [`EVERY`] ago. `jobs` lists every
    /// job this server waits for (read only when the snapshot is renewed).
    pub(crate) async fn job<S: Store>(
        &self,
        store: &S,
        jobs: impl FnOnce() -> Vec<String>,
        job_id: &str,
    ) -> JobCheck {
        let snapshot = self.fresh(store, jobs).await;
        match snapshot.jobs.get(job_id) {
            Some(row) => JobCheck::Row(row.clone()),
            None if snapshot.asked.contains(job_id) => JobCheck::Gone,
            None => JobCheck::Unknown,
        }
    }

    /// Whether another server now owns build `build_id`, which this server
    /// has been waiting for (or running) since `since`: only a snapshot
    /// read after that moment can say so (an older one predates the build,
    /// or this server's taking it over). Unknown counts as still owned.
    pub(crate) async fn lost<S: Store>(
        &self,
        store: &S,
        jobs: impl FnOnce() -> Vec<String>,
        build_id: &str,
        since: Instant,
    ) -> bool {
        let snapshot = self.fresh(store, jobs).await;
        match (&snapshot.owned, snapshot.began) {
            (Some(owned), Some(began)) if began > since => !owned.contains(build_id),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{
        AgentStore, BuildStore, NewAgentJob, NewBuild, NewProject, ServerStore, SqliteStore,
    };
    use serde_json::json;

    async fn store(dir: &std::path::Path) -> SqliteStore {
        let key = gantry_store::MasterKey::load_or_create(&dir.join("k")).expect("key");
        SqliteStore::open(&dir.join("db"), key)
            .await
            .expect("store")
    }

    async fn enqueue(store: &SqliteStore, id: &str) {
        store
            .enqueue_job(&NewAgentJob {
                id: id.into(),
                kind: "codebuild".into(),
                labels: vec![],
                payload: json!({}),
                max_attempts: 3,
            })
            .await
            .expect("enqueue");
    }

    fn ids(list: &[&str]) -> impl FnOnce() -> Vec<String> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        move || list
    }

    #[tokio::test]
    async fn one_read_serves_every_waiting_job_until_it_is_a_second_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path()).await;
        enqueue(&store, "j1").await;
        let checks = WaitChecks::default();
        let first = checks.job(&store, ids(&["j1", "gone"]), "j1").await;
        assert!(
            matches!(&first, JobCheck::Row(r) if r.status == "QUEUED"),
            "{first:?}"
        );
        assert_eq!(checks.job(&store, ids(&[]), "gone").await, JobCheck::Gone);
        // Queued after the read: the snapshot does not know it yet, and
        // the list of waiting jobs is not even asked for.
        enqueue(&store, "j2").await;
        let not_asked = || -> Vec<String> { panic!("read again within a second") };
        assert_eq!(checks.job(&store, not_asked, "j2").await, JobCheck::Unknown);
        tokio::time::sleep(EVERY).await;
        let later = checks.job(&store, ids(&["j1", "j2"]), "j2").await;
        assert!(
            matches!(&later, JobCheck::Row(r) if r.id == "j2"),
            "{later:?}"
        );
    }

    #[tokio::test]
    async fn a_build_counts_as_lost_only_when_a_read_after_the_wait_began_shows_another_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path()).await;
        store
            .create_project(
                &NewProject {
                    name: "web".into(),
                    project: json!({"name": "web"}),
                },
                "test",
            )
            .await
            .expect("project");
        // Each build is owned by the server that created it.
        for (id, owner) in [("web:theirs", "other"), ("web:mine", "me")] {
            store.set_server_id(owner);
            let build = NewBuild {
                id: id.into(),
                project: "web".into(),
                status: "IN_PROGRESS".into(),
                current_phase: "QUEUED".into(),
                build: json!({}),
                overrides: json!({}),
                start_ms: 1,
            };
            store.create_build(&build, "test").await.expect("build");
        }
        let since = Instant::now();
        let checks = WaitChecks::default();
        assert!(checks.lost(&store, ids(&[]), "web:theirs", since).await);
        assert!(!checks.lost(&store, ids(&[]), "web:mine", since).await);
        // A wait that began after the last read cannot be judged by it (the
        // build may be newer than the read, or just taken over).
        assert!(
            !checks
                .lost(&store, ids(&[]), "web:theirs", Instant::now())
                .await
        );
    }
}
