//! The store conformance suite: what every [`store::Store`] backend must do, as test cases that
//! take a fresh store.
//!
//! The rules of the tracker live in the `tracker` crate, so a backend cannot get them wrong in
//! its own way; what it can get wrong is persisting: a batch that is not all-or-nothing, a
//! second claim that slips past under concurrency, a log that cannot be resumed, versions with
//! gaps, a key or a merge step that is lost, sums that do not add up, a projection that drifts
//! from its events, a lease or fencing token that does not hold. Each case here checks one of those through the [`store::Store`] trait
//! alone, so the same cases run against SQLite today and PostgreSQL later.
//!
//! The principal items:
//! - [`Fresh`]: a store on an empty database, with whatever must outlive it (a temporary
//!   directory, a scratch database to drop).
//! - [`cases`]: the test cases, each an `async fn(Fresh)` that panics on a violation.
//! - [`suite!`]: expands to one `#[tokio::test]` per case for a backend's test binary.
//!
//! ```text
//! fn fresh() -> conformance::Fresh {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = store::SqliteStore::open(&dir.path().join("agentgrid.db")).unwrap();
//!     conformance::Fresh::new(store, dir)
//! }
//! conformance::suite!(fresh);
//! ```

pub mod cases;

use std::any::Any;
use std::sync::Arc;

use store::Store;

/// A store on an empty database, and what must live as long as it does.
pub struct Fresh {
    pub store: Arc<dyn Store>,
    /// Dropped after the test: the temporary directory or scratch database of the store.
    pub keep: Box<dyn Any + Send>,
}

impl Fresh {
    pub fn new(store: impl Store, keep: impl Any + Send) -> Fresh {
        Fresh {
            store: Arc::new(store),
            keep: Box::new(keep),
        }
    }
}

/// One `#[tokio::test]` per case of [`cases`], each on a store from `$fresh()`. The test
/// binary must depend on `tokio` with its macros and the multi-threaded runtime.
#[macro_export]
macro_rules! suite {
    ($fresh:path) => {
        $crate::suite!(@cases $fresh;
            a_batch_returns_what_it_wrote,
            a_refused_change_rolls_back_its_whole_batch,
            a_task_has_at_most_one_active_execution,
            racing_claims_make_one_execution,
            an_execution_finishes_once,
            events_after_resumes_from_any_position,
            every_entity_counts_its_versions_from_one,
            an_idempotency_key_is_used_once,
            a_done_sub_task_is_merged_once,
            model_usage_adds_up_per_execution_tree_and_model,
            provider_standings_follow_their_events,
            the_projection_is_the_fold_of_the_log,
            a_claim_carries_its_node_lease_and_fencing_token,
            a_lease_is_renewed_only_by_its_live_holder,
            a_stale_token_writes_nothing,
            nodes_recover_only_each_others_expired_executions,
            a_renewal_and_an_expiry_race_to_one_outcome,
            a_message_persists_and_is_acknowledged_once,
            racing_acknowledgements_take_one,
            an_announcement_is_acknowledged_once_per_reader,
            identical_alerts_open_once,
            inboxes_and_sweeps_follow_receivers_and_time,
            a_flooding_sender_is_bounded_across_batches,
            any_open_message_follows_the_messages_states,
            remarked_tasks_are_those_with_something_said,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::cases::$case($fresh()).await;
            }
        )*
    };
}
