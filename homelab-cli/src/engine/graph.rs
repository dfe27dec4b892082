//! Runs steps as a dependency graph: independent steps in parallel up to a bound, a failed
//! step skips everything that depends on it (and only that).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

/// Why a step failed and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepError {
    /// What went wrong.
    pub message: String,
    /// What the user can do.
    pub hint: Option<String>,
}

impl StepError {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            hint: None,
        }
    }
    /// Add what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl<E: std::fmt::Display> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError::new(e.to_string())
    }
}

/// One unit of work.
pub struct Step {
    /// Unique id, referenced by `deps`.
    pub id: String,
    /// For people (`create vm 200 "talos-cp-1"`).
    pub label: String,
    /// Steps that must succeed first (unknown ids are ignored: already satisfied).
    pub deps: Vec<String>,
    /// The work; returns a short detail for the summary.
    pub run: BoxFuture<'static, Result<String, StepError>>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("id", &self.id)
            .field("deps", &self.deps)
            .finish()
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Succeeded.
    Done {
        /// Short detail.
        detail: String,
    },
    /// Failed.
    Failed {
        /// The error.
        error: StepError,
    },
    /// Not run because a dependency failed.
    Skipped {
        /// The failed step it waited for.
        because: String,
    },
}

/// A finished step.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    /// Step id.
    pub id: String,
    /// Step label.
    pub label: String,
    /// The steps it waited for.
    pub deps: Vec<String>,
    /// Outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it ran.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// Receives step events (progress bars, log lines).
pub trait Observer: Send + Sync {
    /// A step started.
    fn started(&self, id: &str, label: &str);
    /// A step ended.
    fn finished(&self, f: &Finished);
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn started(&self, _: &str, _: &str) {}
    fn finished(&self, _: &Finished) {}
}

/// Run `steps` with at most `parallelism` at once. Results come back in completion order.
pub async fn run(steps: Vec<Step>, parallelism: usize, observer: &dyn Observer) -> Vec<Finished> {
    let parallelism = parallelism.max(1);
    let ids: BTreeSet<String> = steps.iter().map(|s| s.id.clone()).collect();
    let mut waiting: BTreeMap<String, Step> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for mut s in steps {
        s.deps.retain(|d| ids.contains(d) && *d != s.id);
        order.push(s.id.clone());
        waiting.insert(s.id.clone(), s);
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new(); // id -> root failure id
    let mut results = Vec::new();
    let mut running = FuturesUnordered::new();
    loop {
        // Skip steps whose dependency failed (transitively: skipped counts as failed).
        loop {
            let doomed: Vec<(String, String)> = waiting
                .values()
                .filter_map(|s| {
                    s.deps
                        .iter()
                        .find_map(|d| failed.get(d))
                        .map(|root| (s.id.clone(), root.clone()))
                })
                .collect();
            if doomed.is_empty() {
                break;
            }
            for (id, root) in doomed {
                if let Some(s) = waiting.remove(&id) {
                    let f = Finished {
                        id: s.id.clone(),
                        label: s.label,
                        deps: s.deps,
                        outcome: Outcome::Skipped {
                            because: root.clone(),
                        },
                        elapsed: Duration::ZERO,
                    };
                    observer.finished(&f);
                    results.push(f);
                    failed.insert(id, root);
                }
            }
        }
        // Start ready steps in declaration order.
        let ready: Vec<String> = order
            .iter()
            .filter(|id| {
                waiting
                    .get(*id)
                    .is_some_and(|s| s.deps.iter().all(|d| done.contains(d)))
            })
            .cloned()
            .collect();
        for id in ready {
            if running.len() >= parallelism {
                break;
            }
            if let Some(s) = waiting.remove(&id) {
                observer.started(&s.id, &s.label);
                let Step {
                    id,
                    label,
                    run,
                    deps,
                } = s;
                running.push(async move {
                    let t = Instant::now();
                    let r = run.await;
                    (id, label, deps, r, t.elapsed())
                });
            }
        }
        let Some((id, label, deps, r, elapsed)) = running.next().await else {
            break;
        };
        let outcome = match r {
            Ok(detail) => {
                done.insert(id.clone());
                Outcome::Done { detail }
            }
            Err(error) => {
                failed.insert(id.clone(), id.clone());
                Outcome::Failed { error }
            }
        };
        let f = Finished {
            id,
            label,
            deps,
            outcome,
            elapsed,
        };
        observer.finished(&f);
        results.push(f);
    }
    // Anything left waits on a cycle: report rather than hang.
    for (_, s) in waiting {
        results.push(Finished {
            id: s.id,
            label: s.label,
            deps: s.deps,
            outcome: Outcome::Skipped {
                because: "a dependency cycle".into(),
            },
            elapsed: Duration::ZERO,
        });
    }
    results
}

/// The longest chain of step durations through the dependency graph: the least time the
/// run could have taken with unbounded parallelism.
pub fn critical_path(finished: &[Finished]) -> Duration {
    let by_id: BTreeMap<&str, &Finished> = finished.iter().map(|f| (f.id.as_str(), f)).collect();
    let mut memo: BTreeMap<String, Duration> = BTreeMap::new();
    fn finish_at<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a Finished>,
        memo: &mut BTreeMap<String, Duration>,
        depth: usize,
    ) -> Duration {
        if let Some(d) = memo.get(id) {
            return *d;
        }
        let Some(f) = by_id.get(id) else {
            return Duration::ZERO;
        };
        let before = if depth > by_id.len() {
            Duration::ZERO // a cycle: stop
        } else {
            f.deps
                .iter()
                .map(|d| finish_at(d, by_id, memo, depth + 1))
                .max()
                .unwrap_or_default()
        };
        let t = before + f.elapsed;
        memo.insert(id.to_string(), t);
        t
    }
    finished
        .iter()
        .map(|f| finish_at(&f.id, &by_id, &mut memo, 0))
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;

    use super::*;

    fn step(id: &str, deps: &[&str], fail: bool, live: Arc<(AtomicUsize, AtomicUsize)>) -> Step {
        let id_s = id.to_string();
        Step {
            id: id.into(),
            label: format!("step {id}"),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            run: async move {
                let now = live.0.fetch_add(1, Ordering::SeqCst) + 1;
                live.1.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                live.0.fetch_sub(1, Ordering::SeqCst);
                if fail {
                    Err(StepError::new(format!("{id_s} broke")).hint("fix it"))
                } else {
                    Ok(id_s)
                }
            }
            .boxed(),
        }
    }

    #[tokio::test]
    async fn failures_skip_only_dependents_and_parallelism_is_bounded() {
        let live = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let steps = vec![
            step("iso", &[], false, live.clone()),
            step("a", &["iso"], true, live.clone()),
            step("b", &["iso"], false, live.clone()),
            step("c", &["iso"], false, live.clone()),
            step("d", &["iso"], false, live.clone()),
            step("talos-a", &["a"], false, live.clone()),
            step("bootstrap", &["talos-a", "b"], false, live.clone()),
        ];
        let res = run(steps, 2, &Quiet).await;
        let by: BTreeMap<_, _> = res.iter().map(|f| (f.id.as_str(), &f.outcome)).collect();
        assert!(matches!(by["a"], Outcome::Failed { .. }));
        assert!(matches!(by["b"], Outcome::Done { .. }));
        assert!(matches!(by["d"], Outcome::Done { .. }));
        assert_eq!(
            by["talos-a"],
            &Outcome::Skipped {
                because: "a".into()
            }
        );
        assert_eq!(
            by["bootstrap"],
            &Outcome::Skipped {
                because: "a".into()
            }
        );
        assert_eq!(res.len(), 7);
        assert!(live.1.load(Ordering::SeqCst) <= 2);
        assert_eq!(
            live.1.load(Ordering::SeqCst),
            2,
            "independent steps ran together"
        );
    }
}
