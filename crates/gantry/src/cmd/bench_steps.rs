//! `gantry bench pipeline --steps`: collects the server's timing events
//! (`gantry_server::timing`) and prints the median of each step, so a
//! change on the webhook's path shows where its time went.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Step name → the durations reported, in microseconds.
#[derive(Clone, Default)]
pub(crate) struct Steps(Arc<Mutex<BTreeMap<String, Vec<u64>>>>);

impl Steps {
    /// Installs the collector as the process's subscriber; `None` when
    /// another one is installed already.
    pub(crate) fn install() -> Option<Steps> {
        let steps = Steps::default();
        let subscriber = tracing_subscriber::registry().with(Collector(steps.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|()| steps)
    }

    /// Takes what was collected so far.
    pub(crate) fn take(&self) -> BTreeMap<String, Vec<u64>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Prints one line per step: how often it was reported, median and p90.
pub(crate) fn print(steps: BTreeMap<String, Vec<u64>>) {
    // In the order the steps happen; others (new ones) after them.
    const ORDER: &[&str] = &[
        "webhook.checks",
        "engine.save_start",
        "webhook.start",
        "webhook.record",
        "source.fetch",
        "source.checkout",
        "source.store",
        "engine.save_result",
        "build.lookup",
        "build.materialize",
        "build.create",
    ];
    let rank = |name: &str| ORDER.iter().position(|o| *o == name).unwrap_or(ORDER.len());
    let mut names: Vec<&String> = steps.keys().collect();
    names.sort_by_key(|n| (rank(n), (*n).clone()));
    println!("  steps (server timing events; several steps overlap)");
    for name in names {
        let mut micros = steps[name].clone();
        micros.sort_unstable();
        let at = |p: f64| {
            let i = ((micros.len() as f64 - 1.0) * p).round() as usize;
            micros[i.min(micros.len() - 1)] as f64 / 1000.0
        };
        println!(
            "    {name:<20} {:>5} times   median {:>6.2} ms   p90 {:>6.2} ms",
            micros.len(),
            at(0.5),
            at(0.9)
        );
    }
}

struct Collector(Steps);

fn is_timing(metadata: &Metadata<'_>) -> bool {
    metadata.target() == gantry_server::timing::TARGET
}

impl<S: Subscriber> Layer<S> for Collector {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_timing(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        is_timing(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut seen = Seen::default();
        event.record(&mut seen);
        if let (Some(step), Some(micros)) = (seen.step, seen.micros) {
            self.0
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(step)
                .or_default()
                .push(micros);
        }
    }
}

#[derive(Default)]
struct Seen {
    step: Option<String>,
    micros: Option<u64>,
}

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "step" {
            self.step = Some(value.to_owned());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "micros" {
            self.micros = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}
