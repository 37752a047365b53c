//! Leases for leader election, on both stores: take, renew, refuse, expire,
//! take over (the term grows), release, and one winner of a race.

use std::sync::Arc;

use gantry_store::LeaderStore;

#[macro_use]
mod common;
use common::Backend;

async fn a_lease_is_held_renewed_and_taken_over_when_it_expires<B: Backend>(b: &B) {
    let store = b.open().await;
    assert_eq!(store.lease("singletons").await.expect("lease"), None);
    let first = store
        .acquire_lease("singletons", "a", 1_000, 10_000)
        .await
        .expect("acquire")
        .expect("a takes the free lease");
    assert_eq!(
        (first.holder.as_str(), first.term, first.expires_ms),
        ("a", 1, 11_000)
    );
    // Another holder is refused while the lease runs, even at its last moment.
    for now in [1_001, 10_999] {
        assert_eq!(
            store
                .acquire_lease("singletons", "b", now, 10_000)
                .await
                .expect("b"),
            None
        );
    }
    // The holder renews: same term, later expiry.
    let renewed = store
        .acquire_lease("singletons", "a", 4_000, 10_000)
        .await
        .expect("renew")
        .expect("a renews");
    assert_eq!((renewed.term, renewed.expires_ms), (1, 14_000));
    // Once it has run out, another holder takes it, with the next term.
    let taken = store
        .acquire_lease("singletons", "b", 14_000, 10_000)
        .await
        .expect("take over")
        .expect("b takes the expired lease");
    assert_eq!((taken.holder.as_str(), taken.term), ("b", 2));
    // The old holder's late renewal is refused.
    assert_eq!(
        store
            .acquire_lease("singletons", "a", 14_001, 10_000)
            .await
            .expect("a"),
        None
    );
    assert_eq!(
        store
            .lease("singletons")
            .await
            .expect("lease")
            .map(|l| l.holder),
        Some("b".to_string())
    );
    // Leases are independent by name.
    assert!(
        store
            .acquire_lease("other", "a", 14_001, 10_000)
            .await
            .expect("other")
            .is_some()
    );
}

async fn a_released_lease_is_free_at_once<B: Backend>(b: &B) {
    let store = b.open().await;
    store
        .acquire_lease("singletons", "a", 1_000, 10_000)
        .await
        .expect("acquire")
        .expect("a");
    // Releasing someone else's lease does nothing.
    store
        .release_lease("singletons", "b")
        .await
        .expect("release b");
    assert_eq!(
        store
            .acquire_lease("singletons", "b", 2_000, 10_000)
            .await
            .expect("b"),
        None
    );
    store
        .release_lease("singletons", "a")
        .await
        .expect("release a");
    let taken = store
        .acquire_lease("singletons", "b", 2_000, 10_000)
        .await
        .expect("b")
        .expect("b takes the released lease");
    assert_eq!(taken.term, 2);
}

async fn of_many_racing_for_a_lease_one_wins<B: Backend>(b: &B) {
    let store = Arc::new(b.open().await);
    for round in 0..5i64 {
        // Each round starts after the previous lease has run out.
        let now = 1_000 + round * 100_000;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .acquire_lease("singletons", &format!("server-{round}-{i}"), now, 10_000)
                    .await
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.expect("join").expect("acquire").is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
        let lease = store
            .lease("singletons")
            .await
            .expect("lease")
            .expect("held");
        assert_eq!(lease.term, round as u64 + 1);
    }
}

both_stores!(
    a_lease_is_held_renewed_and_taken_over_when_it_expires,
    a_released_lease_is_free_at_once,
    of_many_racing_for_a_lease_one_wins,
);
