//! Progress of `up`/`down` steps: one spinner per running step on a terminal
//! (`ctx.progress`), plain lines on stderr otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::context::Context;
use crate::engine::graph::{Finished, Observer, Outcome};

/// Shows steps as they run.
#[derive(Debug)]
pub struct StepProgress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    lines: bool,
}

impl StepProgress {
    /// Bars when the context allows them, else lines unless quiet.
    pub fn new(ctx: &Context) -> Self {
        StepProgress {
            multi: ctx.progress.then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
            lines: !ctx.progress && ctx.verbosity >= 0,
        }
    }

    /// Remove any bar left.
    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl Observer for StepProgress {
    fn started(&self, id: &str, label: &str) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            if let Ok(mut bars) = self.bars.lock() {
                bars.insert(id.to_string(), bar);
            }
        }
    }

    fn finished(&self, f: &Finished) {
        let line = match &f.outcome {
            Outcome::Done { detail } => format!("✓ {} ({detail})", f.label),
            Outcome::Failed { error } => format!("✗ {}: {}", f.label, error.message),
            Outcome::Skipped { because } => format!("- {} skipped (waits for {because})", f.label),
        };
        let bar = self.bars.lock().ok().and_then(|mut b| b.remove(&f.id));
        if let Some(bar) = bar {
            bar.finish_and_clear();
            if let Some(m) = &self.multi {
                let _ = m.println(&line);
            }
        } else if self.lines {
            eprintln!("{line}");
        }
    }
}
