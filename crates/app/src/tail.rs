//! The end of the event log: its last events, of every entity or of one task.
//!
//! The log's `seq` is monotonic but may skip numbers (a PostgreSQL sequence does), so the last
//! `count` events are found by reading a window below the last `seq` and widening it until it
//! holds enough, not by subtracting.

use domain::{EntityKind, Event, TaskId};

use crate::{Actor, App, Error, Query};

/// The last `count` events, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailEvents {
    /// Only this task's own events.
    pub task: Option<TaskId>,
    pub count: u32,
}

/// The answer to [`TailEvents`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventTail {
    pub events: Vec<Event>,
    /// The position to follow from: the last event's `seq`, or the log's end when there is none.
    pub next: u64,
}

#[async_trait::async_trait]
impl Query for TailEvents {
    type Output = EventTail;

    async fn run(self, app: &App, _actor: &Actor) -> Result<EventTail, Error> {
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let last = app.store.last_seq().await?;
        let mut events = match self.task {
            Some(task) => app.store.entity_events(EntityKind::Task, task.0).await?,
            None => {
                // At most `window` events lie after `last - window`; where numbers were skipped
                // there are fewer, and the window doubles until it holds `count` or reaches 0.
                let mut window = u64::from(self.count);
                loop {
                    let from = last.saturating_sub(window);
                    let mut read = Vec::new();
                    let mut after = from;
                    // Paged: events recorded meanwhile are read too, and cut below.
                    loop {
                        let page = app.store.events_after(after, 1000).await?;
                        let Some(end) = page.last().map(|e| e.seq) else {
                            break;
                        };
                        after = end;
                        let short = page.len() < 1000;
                        read.extend(page);
                        if short {
                            break;
                        }
                    }
                    if read.len() >= count || from == 0 {
                        break read;
                    }
                    window = window.saturating_mul(2);
                }
            }
        };
        let keep_from = events.len().saturating_sub(count);
        let events = events.split_off(keep_from);
        let next = events.last().map_or(last, |e| e.seq.max(last));
        Ok(EventTail { events, next })
    }
}
