//! The jobs this server knows to be queued, kept in memory so an offer
//! seldom reads the store's queue.
//!
//! Every job this server queues (or its reaper queues again) is noted
//! here, oldest first, and leaves when it is acknowledged (by whichever
//! agent, the acknowledgement failing or not) or its build stops waiting
//! for it. An offer takes the oldest job here its agent can run and nobody
//! here has an offer of; it reads the store's queue only
//!
//! - every [`SCAN_EVERY`] at most (once for all the server's polls), so
//!   jobs queued through other servers, or requeued by their reapers, are
//!   seen, and the store's oldest job goes first now and then;
//! - when nothing here fits and the last read saw queued jobs this server
//!   did not know of (or could not see them all): another server's, say;
//! - when told something it cannot know was queued ([`OfferQueue::rescan`]:
//!   a `command` job, or a build taken over after a restart).
//!
//! Nothing here decides who gets a job: an entry out of date (taken through
//! another server, say) only costs the agent an acknowledgement refused
//! by the store's conditional update, and a poll. Before, every offer read
//! the oldest queued jobs from the store: more than two reads per build,
//! most of them finding nothing new.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use gantry_store::{OfferableJob, labels_match};

/// How often, at most, an offer reads the store's queue while the jobs
/// known here serve.
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(100);

/// Jobs kept before new ones are left to the store's queue (read again,
/// then, whenever nothing here fits).
const KEPT: usize = 65_536;

/// What an offer should do next.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Offer this job (claimed for the offer).
    Offer(OfferableJob),
    /// Read the store's queue.
    Scan,
    /// Nothing to offer.
    Nothing,
}

/// The jobs known queued, oldest first, and what the last look at the
/// store's queue saw.
#[derive(Default)]
pub(crate) struct OfferQueue {
    /// Oldest first, each with its ticket; an entry whose ticket is no
    /// longer its job's in `known` is dropped lazily.
    jobs: VecDeque<(u64, OfferableJob)>,
    /// The jobs known queued: id → the ticket of its live entry (a job gone
    /// and queued again gets a new entry and ticket).
    known: HashMap<String, u64>,
    next_ticket: u64,
    /// When the store's queue was last read (or a read was begun).
    last_scan: Option<Instant>,
    /// The last read saw a queued job not among `jobs`, or read a full page
    /// (jobs beyond it unseen), or jobs were left out for want of room.
    unknown_seen: bool,
}

impl OfferQueue {
    /// `job` is queued (again, with its new attempt count, if known: in
    /// its place, since the store's queue is in order of creation).
    pub fn queued(&mut self, job: &OfferableJob) {
        if let Some(&ticket) = self.known.get(&job.id) {
            // Rare (a lease ran out): a walk is fine.
            if let Some((_, known)) = self.jobs.iter_mut().find(|(t, _)| *t == ticket) {
                *known = job.clone();
            }
        } else if self.known.len() < KEPT {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.known.insert(job.id.clone(), ticket);
            self.jobs.push_back((ticket, job.clone()));
        } else {
            self.unknown_seen = true;
        }
    }

    /// `job_id` is no longer queued as far as this server knows.
    pub fn gone(&mut self, job_id: &str) {
        if self.known.remove(job_id).is_none() {
            return;
        }
        // Entries of jobs gone are skipped, and dropped at the front; the
        // rest go when they outnumber the live ones (a job nobody can run
        // may stay at the front while thousands pass behind it).
        while self.jobs.front().is_some_and(|e| !self.live(e)) {
            self.jobs.pop_front();
        }
        if self.jobs.len() > 2 * self.known.len() + 64 {
            let known = &self.known;
            self.jobs.retain(|(t, j)| known.get(&j.id) == Some(t));
        }
    }

    fn live(&self, (ticket, job): &(u64, OfferableJob)) -> bool {
        self.known.get(&job.id) == Some(ticket)
    }

    /// The next read of the store's queue is not to wait for [`SCAN_EVERY`].
    pub fn rescan(&mut self) {
        self.last_scan = None;
    }

    /// A job was queued through another server: the store's queue holds
    /// one not known here, to be read for when nothing here fits.
    pub fn queued_elsewhere(&mut self) {
        self.unknown_seen = true;
    }

    /// What an offer to an agent with `labels` should do at `now`. `claim`
    /// claims a job for the offer (false when another poll here has it);
    /// a job returned is claimed. A [`Next::Scan`] counts as a read begun,
    /// so the server's other polls do not all read at once.
    pub fn next(
        &mut self,
        labels: &[String],
        now: Instant,
        mut claim: impl FnMut(&OfferableJob) -> bool,
    ) -> Next {
        let due = self
            .last_scan
            .is_none_or(|at| now.saturating_duration_since(at) >= SCAN_EVERY);
        if !due
            && let Some(job) = self
                .jobs
                .iter()
                .filter(|e| self.live(e))
                .map(|(_, j)| j)
                .find(|j| labels_match(labels, &j.labels) && claim(j))
        {
            return Next::Offer(job.clone());
        }
        if due || self.unknown_seen {
            self.last_scan = Some(now);
            return Next::Scan;
        }
        Next::Nothing
    }

    /// A read of the store's queue returned `page`, which was `full` (as
    /// many rows as asked for: there may be more).
    pub fn scanned(&mut self, page: &[OfferableJob], full: bool) {
        self.unknown_seen = full || page.iter().any(|p| !self.known.contains_key(&p.id));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, labels: &[&str], attempts: u32) -> OfferableJob {
        OfferableJob {
            id: id.into(),
            kind: "codebuild".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            attempts,
        }
    }

    fn host() -> Vec<String> {
        vec!["executor:host".into()]
    }

    fn offered(next: Next) -> String {
        match next {
            Next::Offer(job) => job.id,
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    #[test]
    fn jobs_known_here_are_offered_oldest_first_without_a_read_between_scans() {
        let mut queue = OfferQueue::default();
        let t0 = Instant::now();
        // Nothing read yet: the store's queue first.
        assert_eq!(queue.next(&host(), t0, |_| true), Next::Scan);
        queue.scanned(&[], false);
        queue.queued(&job("a", &["executor:host"], 0));
        queue.queued(&job("docker", &["executor:docker"], 0));
        queue.queued(&job("b", &["executor:host"], 0));
        let soon = t0 + SCAN_EVERY / 2;
        assert_eq!(offered(queue.next(&host(), soon, |_| true)), "a");
        // Claimed by another poll here: the next one that fits.
        assert_eq!(offered(queue.next(&host(), soon, |j| j.id != "a")), "b");
        // Nothing fits and the last read saw nothing unknown: no read.
        assert_eq!(
            queue.next(&host(), soon, |j| j.id == "docker"),
            Next::Nothing
        );
        // Gone and queued again: one entry, at the back, not the old one.
        queue.gone("b");
        queue.queued(&job("b", &["executor:host"], 1));
        assert_eq!(offered(queue.next(&host(), soon, |_| true)), "a");
        assert_eq!(offered(queue.next(&host(), soon, |j| j.id != "a")), "b");
        queue.gone("b");
        assert_eq!(queue.next(&host(), soon, |j| j.id != "a"), Next::Nothing);
        queue.queued(&job("b", &["executor:host"], 0));
        // An acknowledged job leaves; one queued again takes its new count.
        queue.gone("a");
        queue.queued(&job("b", &["executor:host"], 1));
        assert_eq!(queue.len(), 2);
        match queue.next(&host(), soon, |_| true) {
            Next::Offer(j) => assert_eq!((j.id.as_str(), j.attempts), ("b", 1)),
            other => panic!("expected b again, got {other:?}"),
        }
        // SCAN_EVERY on, the store's queue is read (once: the read begun
        // counts) even though jobs here fit.
        let later = t0 + SCAN_EVERY;
        assert_eq!(queue.next(&host(), later, |_| true), Next::Scan);
        assert_eq!(offered(queue.next(&host(), later, |_| true)), "b");
    }

    #[test]
    fn the_store_is_read_while_it_holds_jobs_not_known_here() {
        let mut queue = OfferQueue::default();
        let t0 = Instant::now();
        queue.queued(&job("mine", &["executor:host"], 0));
        assert_eq!(queue.next(&host(), t0, |_| true), Next::Scan);
        // Another server's job in the store: while nothing here fits, every
        // offer reads the store.
        queue.scanned(
            &[
                job("mine", &["executor:host"], 0),
                job("theirs", &["executor:host"], 0),
            ],
            false,
        );
        let soon = t0 + Duration::from_millis(1);
        assert_eq!(offered(queue.next(&host(), soon, |_| true)), "mine");
        assert_eq!(queue.next(&host(), soon, |j| j.id != "mine"), Next::Scan);
        // A read that saw only jobs known here ends that.
        queue.scanned(&[job("mine", &["executor:host"], 0)], false);
        assert_eq!(queue.next(&host(), soon, |j| j.id != "mine"), Next::Nothing);
        // A full page may hide others.
        queue.scanned(&[job("mine", &["executor:host"], 0)], true);
        assert_eq!(queue.next(&host(), soon, |j| j.id != "mine"), Next::Scan);
        queue.scanned(&[], false);
        // Told of a job it cannot know (a command job): read at once.
        queue.rescan();
        assert_eq!(queue.next(&host(), soon, |_| false), Next::Scan);
        queue.scanned(&[], false);
        // Told of a job queued through another server: read when nothing
        // here fits, not before.
        queue.queued_elsewhere();
        assert_eq!(offered(queue.next(&host(), soon, |_| true)), "mine");
        assert_eq!(queue.next(&host(), soon, |_| false), Next::Scan);
    }

    #[test]
    fn jobs_beyond_its_room_are_left_to_the_store() {
        let mut queue = OfferQueue::default();
        let t0 = Instant::now();
        assert_eq!(queue.next(&host(), t0, |_| true), Next::Scan);
        queue.scanned(&[], false);
        for i in 0..KEPT {
            queue.queued(&job(&format!("j{i}"), &["executor:docker"], 0));
        }
        queue.queued(&job("one-too-many", &["executor:host"], 0));
        assert_eq!(queue.len(), KEPT);
        assert_eq!(
            queue.next(&host(), t0 + Duration::from_millis(1), |_| true),
            Next::Scan,
            "a job left out is looked for in the store"
        );
    }
}
