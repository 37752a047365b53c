//! Checked-out source trees handed from a Git source action to the build
//! that reads them, instead of materializing the stored copy again.
//!
//! A source action checks a commit out, stores the tree in the artifact
//! store (the artifact, for retries and every other reader) and offers the
//! directory here under the artifact's reference. The first build action
//! whose input is that reference takes the directory and moves it into
//! place; every later reader (a second action, a stage retry, a server
//! after a restart) materializes the stored artifact, as before. A
//! directory is taken at most once and nothing writes to it between
//! storing and taking, so a build sees exactly the tree that was stored.
//!
//! Offers not taken (the execution failed or was superseded first) are
//! removed when more than [`KEPT`] wait or one is older than [`MAX_AGE`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gantry_artifacts::ArtifactRef;
use tempfile::TempDir;

/// How many offered trees wait at most.
const KEPT: usize = 16;

/// How long an offered tree waits at most.
const MAX_AGE: Duration = Duration::from_secs(600);

/// One offered tree: `scratch` holds it at `scratch/tree`, and is removed
/// (with whatever is left in it) when dropped.
struct Offer {
    reference: ArtifactRef,
    scratch: TempDir,
    tree: PathBuf,
    at: Instant,
}

/// Trees offered by source actions, oldest first.
#[derive(Default)]
pub(crate) struct Checkouts {
    offers: Mutex<VecDeque<Offer>>,
}

/// A taken tree: the directory to move into place, and the scratch
/// directory around it, removed when this is dropped.
pub(crate) struct Taken {
    pub(crate) tree: PathBuf,
    _scratch: TempDir,
}

impl Checkouts {
    /// Offers `tree` (inside `scratch`), the tree stored as `reference`.
    pub(crate) fn offer(&self, reference: ArtifactRef, scratch: TempDir, tree: &Path) {
        let now = Instant::now();
        let mut stale = Vec::new();
        {
            let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
            while offers
                .front()
                .is_some_and(|o| offers.len() >= KEPT || now.duration_since(o.at) > MAX_AGE)
            {
                stale.extend(offers.pop_front());
            }
            offers.push_back(Offer {
                reference,
                scratch,
                tree: tree.to_owned(),
                at: now,
            });
        }
        // Removed outside the lock: a large tree takes a while to delete.
        drop(stale);
    }

    /// Takes the tree stored as `reference`, if one is offered.
    pub(crate) fn take(&self, reference: &ArtifactRef) -> Option<Taken> {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        let i = offers.iter().position(|o| &o.reference == reference)?;
        let offer = offers.remove(i)?;
        Some(Taken {
            tree: offer.tree,
            _scratch: offer.scratch,
        })
    }

    /// How many trees wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.offers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(n: u8) -> ArtifactRef {
        ArtifactRef::from_digest(gantry_artifacts::Digest::of(&[n]))
    }

    fn offer(checkouts: &Checkouts, n: u8) -> PathBuf {
        let scratch = tempfile::tempdir().expect("tempdir");
        let tree = scratch.path().join("tree");
        std::fs::create_dir(&tree).expect("mkdir");
        std::fs::write(tree.join("f"), [n]).expect("write");
        let path = scratch.path().to_owned();
        checkouts.offer(reference(n), scratch, &tree);
        path
    }

    #[test]
    fn a_tree_is_taken_once() {
        let checkouts = Checkouts::default();
        let scratch = offer(&checkouts, 1);
        assert!(checkouts.take(&reference(2)).is_none());
        let taken = checkouts.take(&reference(1)).expect("offered");
        assert_eq!(std::fs::read(taken.tree.join("f")).expect("read"), [1]);
        assert!(checkouts.take(&reference(1)).is_none(), "taken twice");
        drop(taken);
        assert!(!scratch.exists(), "the scratch directory outlived the take");
    }

    #[test]
    fn old_offers_are_removed_beyond_the_bound() {
        let checkouts = Checkouts::default();
        let first = offer(&checkouts, 0);
        for n in 1..=KEPT as u8 {
            offer(&checkouts, n);
        }
        assert_eq!(checkouts.len(), KEPT);
        assert!(!first.exists(), "an evicted tree stayed on disk");
        assert!(checkouts.take(&reference(0)).is_none());
        assert!(checkouts.take(&reference(KEPT as u8)).is_some());
    }
}
