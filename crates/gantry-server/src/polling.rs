//! Polling of Git sources: every `Config::poll_interval`, one
//! `git ls-remote` per distinct repository among the Git source actions
//! that set `PollForSourceChanges: true`, however many pipelines watch it;
//! a branch whose head moved starts each watching pipeline at the new head
//! (trigger type `PollForSourceChanges`).
//!
//! The heads seen are kept in memory: the first round after a start only
//! records them, so a commit pushed while the server was down starts
//! nothing until the next push (webhooks do not have this gap).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use gantry_git::{GitCache, PollState, Poller, Watch};
use gantry_pipeline::Trigger;
use gantry_store::Store;

use crate::codepipeline;
use crate::files;
use crate::router::AppState;

/// Source actions to start per watched branch: (pipeline, action).
type Watchers = BTreeMap<Watch, Vec<(String, String)>>;

async fn watchers<S: Store>(state: &AppState<S>) -> Watchers {
    let mut out = Watchers::new();
    let pipelines = match state.store.list_pipelines().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "listing pipelines to poll failed");
            return out;
        }
    };
    for summary in pipelines {
        let Ok(Some((decl, _))) =
            codepipeline::get_pipeline(state.store.as_ref(), &summary.name).await
        else {
            continue;
        };
        for (_, action) in decl.actions() {
            let t = &action.action_type_id;
            let polls = action
                .config("PollForSourceChanges")
                .is_some_and(|v| v.value.eq_ignore_ascii_case("true"));
            if t.provider.value != "Git" || !polls {
                continue;
            }
            let Some(url) = action.config("RepositoryUrl") else {
                continue;
            };
            let branch = action
                .config("BranchName")
                .map(|b| b.value.clone())
                .unwrap_or_else(|| "main".to_owned());
            out.entry(Watch::new(url.value.clone(), branch))
                .or_default()
                .push((summary.name.clone(), action.name.value.clone()));
        }
    }
    out
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Boxed as a `Send` future: the borrows inside defeat the compiler's
// `Send` proof for the spawned polling task otherwise.
fn start<'a, S: Store>(
    state: &'a AppState<S>,
    pipeline: &'a str,
    trigger: Trigger,
    revisions: BTreeMap<String, String>,
) -> Boxed<'a, Result<String, crate::error::ApiError>> {
    Box::pin(codepipeline::executions::start_execution(
        state,
        pipeline,
        trigger,
        Vec::new(),
        revisions,
        "system",
    ))
}

/// Polls until the task is aborted.
/// Where the poller's last-seen heads are kept (`server_state`).
const SAVED_HEADS: &str = "poller";

/// The heads seen before the last stop, so a push made while the server
/// was down starts its pipelines, and a restart alone starts nothing.
async fn saved_heads<S: Store>(state: &AppState<S>) -> PollState {
    match state.store.server_state(SAVED_HEADS).await {
        Ok(Some(saved)) => serde_json::from_value(saved).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the poller's saved heads are unreadable; starting afresh");
            PollState::default()
        }),
        Ok(None) => PollState::default(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the poller's saved heads failed");
            PollState::default()
        }
    }
}

pub(crate) async fn run<S: Store>(state: AppState<S>) {
    let mut saved = saved_heads(&state).await;
    let mut poller = Poller::with_state(
        GitCache::new(state.config.data_dir.join(files::GIT_MIRRORS)),
        saved.clone(),
    );
    let mut interval = tokio::time::interval(state.config.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let watching = watchers(&state).await;
        if watching.is_empty() {
            continue;
        }
        let watches: Vec<Watch> = watching.keys().cloned().collect();
        let report = poller.tick(&watches).await;
        for (url, error) in &report.errors {
            tracing::warn!(%url, %error, "polling a repository failed");
        }
        for change in report.changes {
            // Owned: borrows held across the awaits below defeat the
            // compiler's `Send` proof for the spawned task.
            let targets = watching.get(&change.watch).cloned().unwrap_or_default();
            for (pipeline, action) in targets {
                let trigger = Trigger {
                    trigger_type: "PollForSourceChanges".into(),
                    trigger_detail: action.clone(),
                };
                let revisions = BTreeMap::from([(action.clone(), change.current.clone())]);
                if let Err(e) = start(&state, &pipeline, trigger, revisions).await {
                    tracing::warn!(%pipeline, error = %e.error.message, "starting a polled pipeline failed");
                }
            }
        }
        // Saved after the starts: a crash in between starts them again on
        // the way back up (at least once), rather than never.
        if poller.state() != &saved {
            let current = poller.state().clone();
            let json = serde_json::to_value(&current).unwrap_or_default();
            match state.store.put_server_state(SAVED_HEADS, &json).await {
                Ok(()) => saved = current,
                Err(e) => tracing::warn!(error = %e, "saving the poller's heads failed"),
            }
        }
    }
}
