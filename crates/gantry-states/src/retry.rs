//! Retriers and catchers: error-name matching with the `States.ALL` / `States.TaskFailed`
//! wildcards, and the backoff delay.

use crate::error::errors;
use crate::path::ReferencePath;
use serde_json::Value;

/// One element of a state's `Retry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    /// The error names this retrier handles.
    pub error_equals: Vec<String>,
    /// Seconds before the first retry (default 1).
    pub interval_seconds: u64,
    /// Retries allowed (default 3; 0 = never).
    pub max_attempts: u64,
    /// Multiplier per retry (default 2.0).
    pub backoff_rate: f64,
    /// Cap on one delay, in seconds.
    pub max_delay_seconds: Option<u64>,
    /// `JitterStrategy: FULL`.
    pub full_jitter: bool,
}

/// One element of a state's `Catch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    /// The error names this catcher handles.
    pub error_equals: Vec<String>,
    /// Where to go.
    pub next: String,
    /// Where the `{Error, Cause}` output goes in the state's input (`None` = discard).
    pub result_path: Option<ReferencePath>,
    /// JSONata `Output`.
    pub output: Option<Value>,
    /// Variables to assign.
    pub assign: Option<Value>,
}

/// Whether an `ErrorEquals` list handles `error`. `States.Runtime` and
/// `States.DataLimitExceeded` are never handled.
pub fn error_matches(list: &[String], error: &str) -> bool {
    if error == errors::RUNTIME || error == errors::DATA_LIMIT_EXCEEDED {
        return false;
    }
    list.iter().any(|e| {
        e == error
            || e == errors::ALL
            || (e == errors::TASK_FAILED
                && error != errors::TIMEOUT
                && error != errors::HEARTBEAT_TIMEOUT)
            || (e == errors::TIMEOUT && error == errors::HEARTBEAT_TIMEOUT)
    })
}

impl Retrier {
    /// The delay before retry number `attempt` (1-based), in milliseconds, before jitter:
    /// `IntervalSeconds × BackoffRate^(attempt−1)`, capped by `MaxDelaySeconds`.
    pub fn delay_millis(&self, attempt: u64) -> u64 {
        let exp = attempt.saturating_sub(1).min(1000) as i32;
        let mut secs = self.interval_seconds as f64 * self.backoff_rate.powi(exp);
        if let Some(max) = self.max_delay_seconds {
            secs = secs.min(max as f64);
        }
        let ms = secs * 1000.0;
        if ms.is_finite() && ms < u64::MAX as f64 {
            ms as u64
        } else {
            u64::MAX / 2
        }
    }

    /// The delay with jitter applied (`FULL`: uniform in `[0, delay]`, from `random`).
    pub fn jittered_delay_millis(&self, attempt: u64, random: u64) -> u64 {
        let d = self.delay_millis(attempt);
        if self.full_jitter && d > 0 {
            random % (d + 1)
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let all = vec!["States.ALL".to_string()];
        assert!(error_matches(&all, "Custom"));
        assert!(!error_matches(&all, "States.Runtime"));
        let tf = vec!["States.TaskFailed".to_string()];
        assert!(!error_matches(&tf, "States.Timeout"));
        assert!(error_matches(&tf, "Lambda.Unknown"));
    }

    #[test]
    fn backoff() {
        let r = Retrier {
            error_equals: vec![],
            interval_seconds: 2,
            max_attempts: 5,
            backoff_rate: 3.0,
            max_delay_seconds: Some(10),
            full_jitter: false,
        };
        assert_eq!(r.delay_millis(1), 2000);
        assert_eq!(r.delay_millis(2), 6000);
        assert_eq!(r.delay_millis(3), 10000);
    }
}
