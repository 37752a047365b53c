//! Polling remotes for new commits: [`PollState`] is the bookkeeping (pure,
//! serialisable so a server can keep it in its database), [`Poller`] adds
//! the I/O — one `git ls-remote` per distinct URL per tick, however many
//! pipelines watch that URL.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::input::redact_url;
use crate::{Error, GitCache, Result};

/// How many remotes one tick lists at once.
const LIST_CONCURRENCY: usize = 8;

/// A branch of a repository that some pipeline watches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watch {
    /// The repository URL.
    pub url: String,
    /// The branch's short name (`main`, not `refs/heads/main`).
    pub branch: String,
}

impl Watch {
    /// A watch of `branch` of `url`.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Self {
        Watch {
            url: url.into(),
            branch: branch.into(),
        }
    }
}

/// A watched branch whose head moved since the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadChange {
    /// The watch that fired.
    pub watch: Watch,
    /// The head at the last tick; `None` if the branch did not exist then.
    pub previous: Option<String>,
    /// The head now.
    pub current: String,
}

/// The last head seen for each watch.
///
/// Serialises (for the database) as `{"heads":[{"url":..,"branch":..,"head":..|null}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "SavedState", from = "SavedState")]
pub struct PollState {
    /// `None`: the watch is known but its branch did not exist on the remote.
    heads: BTreeMap<Watch, Option<String>>,
}

/// [`PollState`] as stored: JSON maps need string keys, a watch is two strings.
#[derive(Serialize, Deserialize)]
struct SavedState {
    heads: Vec<SavedHead>,
}

#[derive(Serialize, Deserialize)]
struct SavedHead {
    url: String,
    branch: String,
    head: Option<String>,
}

impl From<PollState> for SavedState {
    fn from(state: PollState) -> Self {
        SavedState {
            heads: state
                .heads
                .into_iter()
                .map(|(w, head)| SavedHead {
                    url: w.url,
                    branch: w.branch,
                    head,
                })
                .collect(),
        }
    }
}

impl From<SavedState> for PollState {
    fn from(saved: SavedState) -> Self {
        PollState {
            heads: saved
                .heads
                .into_iter()
                .map(|h| (Watch::new(h.url, h.branch), h.head))
                .collect(),
        }
    }
}

impl PollState {
    /// The distinct URLs to list for these watches.
    pub fn urls(watches: &[Watch]) -> BTreeSet<&str> {
        watches.iter().map(|w| w.url.as_str()).collect()
    }

    /// The head last recorded for a watch (`None` if never seen or absent).
    pub fn head(&self, watch: &Watch) -> Option<&str> {
        self.heads.get(watch).and_then(|h| h.as_deref())
    }

    /// Records what the remotes list now and returns the watches whose head
    /// changed.
    ///
    /// `listed` maps each URL that was listed successfully to its refs; a
    /// URL missing from it (its listing failed) keeps its watches' state
    /// and fires nothing. A watch seen for the first time is recorded and
    /// does not fire (a new pipeline is started by its creation, not by
    /// polling). A branch that disappears is recorded as absent and does not
    /// fire; when it comes back it does. Watches not in `watches` are forgotten.
    pub fn observe(
        &mut self,
        watches: &[Watch],
        listed: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Vec<HeadChange> {
        let wanted: BTreeSet<&Watch> = watches.iter().collect();
        self.heads.retain(|w, _| wanted.contains(w));
        let mut changes = Vec::new();
        for watch in wanted {
            let Some(refs) = listed.get(&watch.url) else {
                continue;
            };
            let current = refs.get(&format!("refs/heads/{}", watch.branch)).cloned();
            match self.heads.insert(watch.clone(), current.clone()) {
                None => {}
                Some(previous) => {
                    if let Some(current) = current
                        && previous.as_deref() != Some(current.as_str())
                    {
                        changes.push(HeadChange {
                            watch: watch.clone(),
                            previous,
                            current,
                        });
                    }
                }
            }
        }
        changes
    }
}

/// Lists a remote's refs; [`GitCache`] does it with `git ls-remote`.
pub trait RefLister {
    /// The remote's refs (`refs/heads/main` → sha).
    fn list_refs(&self, url: &str)
    -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
}

impl RefLister for GitCache {
    fn list_refs(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send {
        self.ls_remote(url)
    }
}

/// What one tick found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// The watches whose head moved.
    pub changes: Vec<HeadChange>,
    /// The URLs (redacted) whose listing failed, with why; their watches
    /// keep their previous state.
    pub errors: Vec<(String, Error)>,
}

/// Polls remotes for the heads of watched branches.
#[derive(Debug)]
pub struct Poller<L> {
    lister: L,
    state: PollState,
    listings: u64,
}

impl<L: RefLister + Sync> Poller<L> {
    /// A poller with no history: its first tick records and fires nothing.
    pub fn new(lister: L) -> Self {
        Self::with_state(lister, PollState::default())
    }

    /// A poller that carries on from a saved state.
    pub fn with_state(lister: L, state: PollState) -> Self {
        Poller {
            lister,
            state,
            listings: 0,
        }
    }

    /// The state to save between ticks (or across a restart).
    pub fn state(&self) -> &PollState {
        &self.state
    }

    /// How many remote listings this poller has made.
    pub fn listings(&self) -> u64 {
        self.listings
    }

    /// Lists every distinct URL of `watches` once and returns the watches
    /// whose head changed since the last tick.
    pub async fn tick(&mut self, watches: &[Watch]) -> PollReport {
        // Owned URLs: a stream closure over borrowed ones makes this future
        // impossible to prove `Send` inside a caller's spawned task.
        let urls: Vec<String> = PollState::urls(watches)
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.listings += urls.len() as u64;
        let lister = &self.lister;
        let results: Vec<(String, Result<BTreeMap<String, String>>)> = stream::iter(urls)
            .map(|url| async move {
                let refs = lister.list_refs(&url).await;
                (url, refs)
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut listed = BTreeMap::new();
        let mut errors = Vec::new();
        for (url, result) in results {
            match result {
                Ok(refs) => {
                    listed.insert(url, refs);
                }
                Err(err) => errors.push((redact_url(&url), err)),
            }
        }
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        let changes = self.state.observe(watches, &listed);
        PollReport { changes, errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(b, s)| (format!("refs/heads/{b}"), (*s).to_owned()))
            .collect()
    }

    fn listed(
        items: &[(&str, BTreeMap<String, String>)],
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        items
            .iter()
            .map(|(u, r)| ((*u).to_owned(), r.clone()))
            .collect()
    }

    #[test]
    fn first_observation_records_without_firing_then_changes_fire() {
        let w = vec![
            Watch::new("u1", "main"),
            Watch::new("u1", "dev"),
            Watch::new("u2", "main"),
        ];
        let mut state = PollState::default();
        let first = state.observe(
            &w,
            &listed(&[
                ("u1", refs(&[("main", "a"), ("dev", "b")])),
                ("u2", refs(&[("main", "c")])),
            ]),
        );
        assert!(first.is_empty());
        assert_eq!(state.head(&w[0]), Some("a"));

        let second = state.observe(
            &w,
            &listed(&[
                ("u1", refs(&[("main", "a2"), ("dev", "b")])),
                ("u2", refs(&[("main", "c")])),
            ]),
        );
        assert_eq!(
            second,
            vec![HeadChange {
                watch: w[0].clone(),
                previous: Some("a".into()),
                current: "a2".into()
            }]
        );
        // Nothing moved: nothing fires.
        assert!(
            state
                .observe(
                    &w,
                    &listed(&[
                        ("u1", refs(&[("main", "a2"), ("dev", "b")])),
                        ("u2", refs(&[("main", "c")]))
                    ])
                )
                .is_empty()
        );
    }

    #[test]
    fn a_failed_listing_keeps_state_and_fires_nothing() {
        let w = vec![Watch::new("u1", "main")];
        let mut state = PollState::default();
        state.observe(&w, &listed(&[("u1", refs(&[("main", "a")]))]));
        assert!(state.observe(&w, &BTreeMap::new()).is_empty());
        assert_eq!(state.head(&w[0]), Some("a"));
        let back = state.observe(&w, &listed(&[("u1", refs(&[("main", "b")]))]));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].previous.as_deref(), Some("a"));
    }

    #[test]
    fn deleted_branches_do_not_fire_and_recreated_ones_do() {
        let w = vec![Watch::new("u", "feature")];
        let mut state = PollState::default();
        // Watched before the branch exists: recorded as absent.
        assert!(state.observe(&w, &listed(&[("u", refs(&[]))])).is_empty());
        let created = state.observe(&w, &listed(&[("u", refs(&[("feature", "x")]))]));
        assert_eq!(created[0].previous, None);
        assert!(state.observe(&w, &listed(&[("u", refs(&[]))])).is_empty());
        assert_eq!(state.head(&w[0]), None);
        let again = state.observe(&w, &listed(&[("u", refs(&[("feature", "y")]))]));
        assert_eq!(again[0].current, "y");
    }

    #[test]
    fn forgotten_watches_start_over() {
        let w = vec![Watch::new("u", "main")];
        let mut state = PollState::default();
        state.observe(&w, &listed(&[("u", refs(&[("main", "a")]))]));
        state.observe(&[], &BTreeMap::new());
        // Re-added: a first observation again, so no fire for the move.
        assert!(
            state
                .observe(&w, &listed(&[("u", refs(&[("main", "b")]))]))
                .is_empty()
        );
    }

    #[test]
    fn state_serialises_for_the_database() {
        let w = vec![Watch::new("u", "main")];
        let mut state = PollState::default();
        state.observe(&w, &listed(&[("u", refs(&[("main", "a")]))]));
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            json,
            r#"{"heads":[{"url":"u","branch":"main","head":"a"}]}"#
        );
        let back: PollState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn urls_are_distinct() {
        let w = vec![
            Watch::new("u1", "a"),
            Watch::new("u1", "b"),
            Watch::new("u2", "a"),
        ];
        assert_eq!(
            PollState::urls(&w).into_iter().collect::<Vec<_>>(),
            ["u1", "u2"]
        );
    }
}
