//! Properties of schedule expressions: the next fire time is strictly after
//! `now`, is itself a fire time, and no minute in between is one.

use gantry_events::Schedule;
use proptest::prelude::*;

fn field(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(values).prop_map(str::to_owned)
}

fn cron() -> impl Strategy<Value = String> {
    let minutes = field(&["*", "0", "15", "0/10", "5-20", "0,30", "*/7", "59"]);
    let hours = field(&["*", "0", "9-17", "*/6", "23", "1,13"]);
    let months = field(&["*", "1", "FEB", "6-8", "*/3", "DEC,JAN"]);
    let years = field(&["*", "2024-2030", "2025", "*/2"]);
    let dom = field(&["*", "1", "L", "LW", "15W", "1-7", "*/10", "31", "29"]);
    let dow = field(&["*", "MON-FRI", "SAT,SUN", "2#1", "6L", "L", "1", "FRI-MON"]);
    (minutes, hours, months, years, dom, dow, any::<bool>()).prop_map(
        |(mi, h, mo, y, dom, dow, by_month)| {
            if by_month {
                format!("cron({mi} {h} {dom} {mo} ? {y})")
            } else {
                format!("cron({mi} {h} ? {mo} {dow} {y})")
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn next_fire_is_after_now_and_matches(expr in cron(), now in 1_600_000_000_000i64..1_900_000_000_000i64) {
        let Ok(Schedule::Cron(c)) = Schedule::parse(&expr) else {
            return Err(TestCaseError::fail(format!("{expr} did not parse")));
        };
        if let Some(next) = c.next_after(now) {
            prop_assert!(next > now, "{expr}: {next} <= {now}");
            prop_assert_eq!(next % 60_000, 0);
            prop_assert!(c.matches(next), "{} does not match its own fire time {}", expr, next);
            // Nothing earlier matches (checked up to two days of minutes).
            let mut t = (now / 60_000 + 1) * 60_000;
            while t < next && t < now + 2 * 86_400_000 {
                prop_assert!(!c.matches(t), "{} matches {} before its next fire {}", expr, t, next);
                t += 60_000;
            }
        }
    }

    #[test]
    fn rate_fires_on_its_grid(n in 1i64..500, unit in 0usize..3, anchor in 0i64..2_000_000_000_000, delta in 0i64..10_000_000_000) {
        let (one, many, ms) = [("minute", "minutes", 60_000), ("hour", "hours", 3_600_000), ("day", "days", 86_400_000)][unit];
        let expr = format!("rate({n} {})", if n == 1 { one } else { many });
        let s = Schedule::parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let now = anchor + delta;
        let next = s.next_after(now, anchor).ok_or_else(|| TestCaseError::fail("no fire"))?;
        prop_assert!(next > now);
        prop_assert!(next - now <= n * ms);
        prop_assert_eq!((next - anchor) % (n * ms), 0);
    }
}
