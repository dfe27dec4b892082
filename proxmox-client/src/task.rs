//! [`Task`]: what every mutating guest call hands back. It carries the client, so waiting
//! needs nothing else: `guest.start(&StartOptions::default()).await?.wait(&opts).await?`.
//!
//! Some PVE calls finish synchronously for some guest kinds or server versions (a container
//! config update, `resize` before qemu-server 8.0.2, an LXC `template`): those return a
//! [`Task::finished`] task whose wait succeeds at once, so callers treat both alike.

use std::time::{Duration, Instant};

use crate::api::WaitOptions;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{TaskOutcome, TaskStatus};
use crate::upid::Upid;

/// What a progress callback sees on every poll of a running task.
#[derive(Debug, Clone, Copy)]
pub struct TaskProgress<'a> {
    /// The task's latest status (`running` until it stops).
    pub status: &'a TaskStatus,
    /// Time since the wait began.
    pub elapsed: Duration,
    /// The wait's deadline.
    pub deadline: Duration,
}

/// A server task started by a mutating call, or a change that already completed.
#[derive(Debug, Clone)]
pub struct Task {
    client: Client,
    upid: Option<Upid>,
}

impl Task {
    /// A task to wait for.
    pub fn new(client: Client, upid: Upid) -> Task {
        Task {
            client,
            upid: Some(upid),
        }
    }

    /// A change that completed synchronously (no worker task on the server).
    pub fn finished(client: Client) -> Task {
        Task { client, upid: None }
    }

    /// A task from an answer that is either a UPID or `null` (finished synchronously).
    pub fn from_optional(client: Client, upid: Option<Upid>) -> Task {
        Task { client, upid }
    }

    /// The task's UPID; `None` when the change completed synchronously.
    pub fn upid(&self) -> Option<&Upid> {
        self.upid.as_ref()
    }

    /// Whether the change completed without a worker task.
    pub fn is_finished(&self) -> bool {
        self.upid.is_none()
    }

    /// Waits for the task (see [`Client::wait_task`] for the polling and the errors).
    pub async fn wait(&self, opts: &WaitOptions) -> Result<TaskOutcome> {
        self.wait_with_progress(opts, |_| {}).await
    }

    /// Waits for the task, calling `progress` after every poll that finds it running.
    /// A failed task is [`Error::TaskFailed`], one still running at `opts.deadline`
    /// [`Error::TaskTimeout`] (it keeps running on the server).
    pub async fn wait_with_progress(
        &self,
        opts: &WaitOptions,
        mut progress: impl FnMut(TaskProgress<'_>),
    ) -> Result<TaskOutcome> {
        let Some(upid) = &self.upid else {
            return Ok(TaskOutcome::Ok);
        };
        let started = Instant::now();
        let mut interval = opts.initial_interval;
        let mut misses = 0u32;
        loop {
            let Some(st) =
                crate::api::poll_task(&self.client, upid, started, opts.deadline, &mut misses)
                    .await?
            else {
                tokio::time::sleep(interval).await;
                continue;
            };
            if st.is_stopped() {
                let exit = st.exitstatus.unwrap_or_else(|| "unexpected status".into());
                return TaskOutcome::from_exitstatus(&exit).map_err(|text| Error::TaskFailed {
                    upid: upid.to_string(),
                    exitstatus: text,
                });
            }
            let elapsed = started.elapsed();
            progress(TaskProgress {
                status: &st,
                elapsed,
                deadline: opts.deadline,
            });
            if elapsed >= opts.deadline {
                return Err(Error::TaskTimeout {
                    upid: upid.to_string(),
                    waited: elapsed,
                });
            }
            tokio::time::sleep(interval.min(opts.deadline - elapsed)).await;
            interval = (interval + interval / 2).min(opts.max_interval);
        }
    }
}
