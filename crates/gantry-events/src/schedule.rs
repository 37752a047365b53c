//! Schedule expressions: EventBridge's `rate(...)` and six-field `cron(...)`.
//!
//! Pure: the caller passes the instants (epoch milliseconds, UTC); nothing
//! here reads a clock. `croner` (DESIGN.md's choice) does not know AWS's
//! year field nor its `?`-in-exactly-one-day-field rule, and translating
//! `L`/`W`/`#` into its dialect changes their meaning at the edges, so the
//! evaluator is written here: a field is a bit set, and the next fire time
//! is found by skipping whole years, months, days and hours that cannot
//! match, so even an expression that never fires (`cron(0 0 30 2 ? *)`)
//! answers `None` after a few thousand steps.

use std::fmt;

/// The message AWS answers for every invalid schedule expression.
pub const SCHEDULE_INVALID: &str = "Parameter ScheduleExpression is not valid.";

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;

/// Why a schedule expression was refused. Displays AWS's message followed by
/// the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    reason: String,
}

impl ScheduleError {
    fn new(reason: impl Into<String>) -> ScheduleError {
        ScheduleError {
            reason: reason.into(),
        }
    }

    /// What exactly is wrong, e.g. `day-of-week: unknown day name "FUN"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEDULE_INVALID} Reason: {}", self.reason)
    }
}

impl std::error::Error for ScheduleError {}

/// A parsed `rate(...)` or `cron(...)` expression.
///
/// ```
/// use gantry_events::{Schedule, rfc3339_from_ms, ms_from_rfc3339};
///
/// let noon = ms_from_rfc3339("2024-05-01T12:00:00Z").unwrap();
/// // Weekdays at 18:00 UTC.
/// let cron = Schedule::parse("cron(0 18 ? * MON-FRI *)")?;
/// let next = cron.next_after(noon, noon).unwrap();
/// assert_eq!(rfc3339_from_ms(next), "2024-05-01T18:00:00Z");
/// // A rate counts from its anchor (when the rule was created).
/// let rate = Schedule::parse("rate(5 minutes)")?;
/// assert_eq!(rfc3339_from_ms(rate.next_after(noon, noon).unwrap()), "2024-05-01T12:05:00Z");
/// assert!(Schedule::parse("rate(1 minutes)").is_err());
/// # Ok::<(), gantry_events::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `every_ms` milliseconds from an anchor.
    Rate {
        /// The period.
        every_ms: i64,
    },
    /// A cron expression.
    Cron(Box<Cron>),
}

impl Schedule {
    /// Parses an expression as PutRule's `ScheduleExpression`.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        if let Some(body) = expression
            .strip_prefix("rate(")
            .and_then(|r| r.strip_suffix(')'))
        {
            return parse_rate(body);
        }
        if let Some(body) = expression
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
        {
            return Ok(Schedule::Cron(Box::new(Cron::parse(body)?)));
        }
        Err(ScheduleError::new(
            "expected rate(<value> <unit>) or cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)",
        ))
    }

    /// The first fire time strictly after `after_ms`. A rate fires at
    /// `anchor_ms + k × period` (k ≥ 1); a cron at whole minutes that match.
    /// `None` when a cron never fires again (its years are over).
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        match self {
            Schedule::Rate { every_ms } => {
                if after_ms < anchor_ms {
                    return Some(anchor_ms + every_ms);
                }
                let periods = (after_ms - anchor_ms) / every_ms + 1;
                Some(anchor_ms + periods * every_ms)
            }
            Schedule::Cron(cron) => cron.next_after(after_ms),
        }
    }
}

fn parse_rate(body: &str) -> Result<Schedule, ScheduleError> {
    let mut parts = body.split(' ');
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ScheduleError::new(
            "rate needs a value and a unit separated by one space, e.g. rate(5 minutes)",
        ));
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::new(format!(
            "rate value {value:?} is not a positive whole number"
        )));
    }
    let n: i64 = value
        .parse()
        .map_err(|_| ScheduleError::new(format!("rate value {value} is too large")))?;
    if n == 0 {
        return Err(ScheduleError::new("rate value must be greater than 0"));
    }
    let (unit_ms, singular) = match unit {
        "minute" => (MINUTE_MS, true),
        "minutes" => (MINUTE_MS, false),
        "hour" => (60 * MINUTE_MS, true),
        "hours" => (60 * MINUTE_MS, false),
        "day" => (DAY_MS, true),
        "days" => (DAY_MS, false),
        other => {
            return Err(ScheduleError::new(format!(
                "rate unit {other:?} is not one of minute, minutes, hour, hours, day, days"
            )));
        }
    };
    // AWS: a value of 1 takes the singular unit, anything larger the plural.
    if singular != (n == 1) {
        return Err(ScheduleError::new(if n == 1 {
            format!(
                "a rate of 1 takes the singular unit ({})",
                unit.trim_end_matches('s')
            )
        } else {
            format!("a rate of {n} takes the plural unit ({unit}s)")
        }));
    }
    let every_ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| ScheduleError::new(format!("rate value {n} is too large")))?;
    Ok(Schedule::Rate { every_ms })
}

/// Day-of-month conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DaysOfMonth {
    /// Bit d for day d (1..=31).
    days: u32,
    /// `L`: the last day of the month.
    last: bool,
    /// `LW`: the last weekday (Mon–Fri) of the month.
    last_weekday: bool,
    /// `nW`: the weekday nearest day n, within the month.
    nearest_weekday: Vec<u32>,
}

/// Day-of-week conditions; days are 1 (SUN) to 7 (SAT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DaysOfWeek {
    /// Bit w for weekday w.
    days: u32,
    /// `nL`: the last weekday n of the month.
    last_of: Vec<u32>,
    /// `n#k`: the k-th weekday n of the month.
    nth: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayRule {
    Month(DaysOfMonth),
    Week(DaysOfWeek),
}

/// A six-field AWS cron expression: minutes, hours, day-of-month, month,
/// day-of-week, year (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    months: u32,
    /// Bit (year − 1970).
    years: [u64; 4],
    days: DayRule,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const F_MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const F_HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const F_DOM: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const F_MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const F_DOW: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &WEEKDAYS,
};
const F_YEAR: Field = Field {
    name: "year",
    min: FIRST_YEAR as u32,
    max: LAST_YEAR as u32,
    names: &[],
};

impl Field {
    fn err(&self, why: impl fmt::Display) -> ScheduleError {
        ScheduleError::new(format!("{}: {why}", self.name))
    }

    fn value(&self, text: &str) -> Result<u32, ScheduleError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.min + i as u32);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(format!("{text:?} is not a number{}", self.name_hint())));
        }
        let v: u32 = text
            .parse()
            .map_err(|_| self.err(format!("{text} is out of range")))?;
        if v < self.min || v > self.max {
            return Err(self.err(format!("{v} is outside {}-{}", self.min, self.max)));
        }
        Ok(v)
    }

    fn name_hint(&self) -> String {
        if self.names.is_empty() {
            String::new()
        } else {
            format!(" nor one of {}", self.names.join(","))
        }
    }

    /// `*`, `*/s`, `a`, `a-b`, `a/s`, `a-b/s`, lists of them; calls `set`
    /// for each value. Ranges may wrap (`FRI-MON`).
    fn each(&self, item: &str, set: &mut impl FnMut(u32)) -> Result<(), ScheduleError> {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = Some(s)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .filter(|&s| s > 0)
                    .ok_or_else(|| self.err(format!("step {s:?} is not a positive number")))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (self.value(a)?, self.value(b)?)
        } else {
            let v = self.value(range)?;
            // `a/s` runs from a to the end of the field.
            (v, if item.contains('/') { self.max } else { v })
        };
        let span = self.max - self.min + 1;
        let count = if hi >= lo { hi - lo } else { hi + span - lo };
        let mut k = 0;
        while k <= count {
            let v = (lo - self.min + k) % span + self.min;
            set(v);
            k += step;
        }
        Ok(())
    }

    fn mask(&self, text: &str) -> Result<u64, ScheduleError> {
        let mut mask = 0u64;
        for item in text.split(',') {
            self.each(item, &mut |v| mask |= 1 << (v - self.min))?;
        }
        Ok(mask)
    }
}

impl Cron {
    /// Parses the six fields inside `cron(...)`.
    pub fn parse(body: &str) -> Result<Cron, ScheduleError> {
        let fields: Vec<&str> = body.split(' ').collect();
        if fields.len() != 6 || fields.iter().any(|f| f.is_empty()) {
            return Err(ScheduleError::new(format!(
                "cron needs 6 fields separated by single spaces (minutes hours day-of-month month day-of-week year), found {}",
                body.split_whitespace().count()
            )));
        }
        let minutes = F_MINUTES.mask(fields[0])?;
        let hours = F_HOURS.mask(fields[1])? as u32;
        let months = (F_MONTH.mask(fields[3])? as u32) << 1;
        let mut years = [0u64; 4];
        for item in fields[5].split(',') {
            F_YEAR.each(item, &mut |y| {
                let i = (y - F_YEAR.min) as usize;
                years[i / 64] |= 1 << (i % 64);
            })?;
        }
        let days = match (fields[2], fields[4]) {
            ("?", "?") => {
                return Err(ScheduleError::new(
                    "only one of day-of-month and day-of-week can be ?",
                ));
            }
            (dom, "?") => DayRule::Month(parse_dom(dom)?),
            ("?", dow) => DayRule::Week(parse_dow(dow)?),
            _ => {
                return Err(ScheduleError::new(
                    "one of day-of-month and day-of-week must be ? (they cannot both be given)",
                ));
            }
        };
        Ok(Cron {
            minutes,
            hours,
            months,
            years,
            days,
        })
    }

    fn year_ok(&self, year: i32) -> bool {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
            return false;
        }
        let i = (year - FIRST_YEAR) as usize;
        self.years[i / 64] & (1 << (i % 64)) != 0
    }

    fn day_ok(&self, year: i32, month: u32, day: u32) -> bool {
        let dim = days_in_month(year, month);
        match &self.days {
            DayRule::Month(d) => {
                d.days & (1 << day) != 0
                    || (d.last && day == dim)
                    || (d.last_weekday && day == last_weekday(year, month))
                    || d.nearest_weekday
                        .iter()
                        .any(|&n| n <= dim && nearest_weekday(year, month, n) == day)
            }
            DayRule::Week(w) => {
                let wd = weekday(year, month, day);
                w.days & (1 << wd) != 0
                    || w.last_of.iter().any(|&n| n == wd && day + 7 > dim)
                    || w.nth
                        .iter()
                        .any(|&(n, k)| n == wd && (day - 1) / 7 + 1 == k)
            }
        }
    }

    /// Whether the minute containing `ms` is a fire time.
    pub fn matches(&self, ms: i64) -> bool {
        let t = Civil::from_ms(ms);
        self.year_ok(t.year)
            && self.months & (1 << t.month) != 0
            && self.day_ok(t.year, t.month, t.day)
            && self.hours & (1 << t.hour) != 0
            && self.minutes & (1 << t.minute) != 0
    }

    /// The first whole minute strictly after `after_ms` that matches.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = after_ms.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
        let mut t = Civil::from_ms(start);
        // Each step skips at least a whole unit that cannot match; the
        // bound is far above what 230 years of skipping months needs.
        for _ in 0..200_000 {
            if t.year > LAST_YEAR {
                return None;
            }
            if !self.year_ok(t.year) {
                t = Civil::date(t.year + 1, 1, 1);
                continue;
            }
            if self.months & (1 << t.month) == 0 {
                t = if t.month == 12 {
                    Civil::date(t.year + 1, 1, 1)
                } else {
                    Civil::date(t.year, t.month + 1, 1)
                };
                continue;
            }
            if !self.day_ok(t.year, t.month, t.day) {
                t = Civil::from_ms(Civil::date(t.year, t.month, t.day).ms() + DAY_MS);
                continue;
            }
            if self.hours & (1 << t.hour) == 0 {
                t = next_hour(t);
                continue;
            }
            if self.minutes & (1 << t.minute) == 0 {
                match (t.minute + 1..60).find(|m| self.minutes & (1 << m) != 0) {
                    Some(m) => t.minute = m,
                    None => t = next_hour(t),
                }
                continue;
            }
            return Some(t.ms());
        }
        None
    }
}

fn next_hour(t: Civil) -> Civil {
    Civil::from_ms(t.ms() - i64::from(t.minute) * MINUTE_MS + 60 * MINUTE_MS)
}

fn parse_dom(text: &str) -> Result<DaysOfMonth, ScheduleError> {
    let mut d = DaysOfMonth::default();
    for item in text.split(',') {
        if item == "L" {
            d.last = true;
        } else if item == "LW" {
            d.last_weekday = true;
        } else if let Some(n) = item.strip_suffix('W') {
            d.nearest_weekday.push(F_DOM.value(n)?);
        } else {
            F_DOM.each(item, &mut |v| d.days |= 1 << v)?;
        }
    }
    Ok(d)
}

fn parse_dow(text: &str) -> Result<DaysOfWeek, ScheduleError> {
    let mut w = DaysOfWeek::default();
    for item in text.split(',') {
        if item == "L" {
            // `L` alone is the last day of the week: Saturday.
            w.days |= 1 << 7;
        } else if let Some(n) = item.strip_suffix('L') {
            w.last_of.push(F_DOW.value(n)?);
        } else if let Some((n, k)) = item.split_once('#') {
            let n = F_DOW.value(n)?;
            let k: u32 = k
                .parse()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| F_DOW.err(format!("#{k}: the week of the month must be 1-5")))?;
            w.nth.push((n, k));
        } else {
            F_DOW.each(item, &mut |v| w.days |= 1 << v)?;
        }
    }
    Ok(w)
}

/// A UTC date and time to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl Civil {
    fn date(year: i32, month: u32, day: u32) -> Civil {
        Civil {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
        }
    }

    fn from_ms(ms: i64) -> Civil {
        let days = ms.div_euclid(DAY_MS);
        let rest = ms.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (rest / 3_600_000) as u32,
            minute: (rest / MINUTE_MS % 60) as u32,
        }
    }

    fn ms(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY_MS
            + i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * MINUTE_MS
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 1 = Sunday … 7 = Saturday, as AWS numbers them.
fn weekday(year: i32, month: u32, day: u32) -> u32 {
    // 1970-01-01 was a Thursday (5).
    ((days_from_civil(year, month, day) + 4).rem_euclid(7) + 1) as u32
}

fn is_weekend(year: i32, month: u32, day: u32) -> bool {
    matches!(weekday(year, month, day), 1 | 7)
}

fn last_weekday(year: i32, month: u32) -> u32 {
    let mut d = days_in_month(year, month);
    while is_weekend(year, month, d) {
        d -= 1;
    }
    d
}

/// `nW`: the weekday nearest day `n`, never leaving the month.
fn nearest_weekday(year: i32, month: u32, n: u32) -> u32 {
    let dim = days_in_month(year, month);
    match weekday(year, month, n) {
        7 if n == 1 => 3,       // Saturday the 1st: Monday the 3rd.
        7 => n - 1,             // Saturday: the Friday before.
        1 if n == dim => n - 2, // Sunday the last: the Friday before.
        1 => n + 1,             // Sunday: the Monday after.
        _ => n,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for an instant in epoch milliseconds, the form of
/// an event's `time`.
pub fn rfc3339_from_ms(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let rest = ms.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into epoch milliseconds.
pub fn ms_from_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > i64::from(days_in_month(year as i32, month as u32))
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n.min(3)];
        millis = digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_min = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let v = h * 60 + m;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(year as i32, month as u32, day as u32);
    Some(
        days * DAY_MS + hour * 3_600_000 + minute * MINUTE_MS + second * 1000 + millis
            - offset_min * MINUTE_MS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        ms_from_rfc3339(s).expect("time")
    }

    fn next(expr: &str, after: &str) -> String {
        let s = Schedule::parse(expr).expect(expr);
        rfc3339_from_ms(s.next_after(at(after), at(after)).expect("fires"))
    }

    fn nexts(expr: &str, after: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr).expect(expr);
        let mut t = at(after);
        (0..n)
            .map(|_| {
                t = s.next_after(t, 0).expect("fires");
                rfc3339_from_ms(t)
            })
            .collect()
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1000, 0, 59, 365, 11_016, 19_000, 80_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            at("2024-02-29T23:59:59Z") + 1000,
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(at("2024-05-01T14:00:00+02:00"), at("2024-05-01T12:00:00Z"));
        assert_eq!(
            at("2024-05-01T12:00:00.250Z") - at("2024-05-01T12:00:00Z"),
            250
        );
        assert_eq!(ms_from_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(ms_from_rfc3339("yesterday"), None);
        assert_eq!(weekday(2024, 5, 1), 4); // A Wednesday.
    }

    #[test]
    fn rate_units_follow_aws_singular_plural_rule() {
        for ok in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(12 hours)",
            "rate(1 day)",
            "rate(7 days)",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1.5 hours)",
            "rate(5  minutes)",
            "rate(5 weeks)",
            "rate(5)",
            "rate()",
            "rate(5 minutes",
            "every 5 minutes",
            "rate(99999999999999999999 days)",
        ] {
            let e = Schedule::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with(SCHEDULE_INVALID), "{e}");
        }
    }

    #[test]
    fn rate_counts_from_its_anchor() {
        let s = Schedule::parse("rate(5 minutes)").expect("rate");
        let anchor = at("2024-05-01T12:03:10Z");
        assert_eq!(s.next_after(anchor, anchor), Some(anchor + 5 * MINUTE_MS));
        assert_eq!(
            s.next_after(anchor + 5 * MINUTE_MS, anchor),
            Some(anchor + 10 * MINUTE_MS)
        );
        assert_eq!(
            s.next_after(anchor + 5 * MINUTE_MS - 1, anchor),
            Some(anchor + 5 * MINUTE_MS)
        );
    }

    // AWS's documented examples (EventBridge user guide, "Cron expressions").
    #[test]
    fn aws_documented_examples() {
        // 10:15 AM UTC every day.
        assert_eq!(
            next("cron(15 10 * * ? *)", "2024-05-01T12:00:00Z"),
            "2024-05-02T10:15:00Z"
        );
        // 6:00 PM Monday through Friday.
        assert_eq!(
            nexts("cron(0 18 ? * MON-FRI *)", "2024-05-03T18:00:00Z", 2),
            ["2024-05-06T18:00:00Z", "2024-05-07T18:00:00Z"]
        );
        // 8:00 AM on the first day of the month.
        assert_eq!(
            next("cron(0 8 1 * ? *)", "2024-05-01T08:00:00Z"),
            "2024-06-01T08:00:00Z"
        );
        // Every 10 min on weekdays.
        assert_eq!(
            nexts("cron(0/10 * ? * MON-FRI *)", "2024-05-03T23:45:00Z", 3),
            [
                "2024-05-03T23:50:00Z",
                "2024-05-06T00:00:00Z",
                "2024-05-06T00:10:00Z"
            ]
        );
        // Every 5 minutes Monday through Friday between 8:00 am and 5:55 pm.
        assert_eq!(
            nexts("cron(0/5 8-17 ? * MON-FRI *)", "2024-05-01T17:50:00Z", 2),
            ["2024-05-01T17:55:00Z", "2024-05-02T08:00:00Z"]
        );
        // 9 AM on the first Monday of each month.
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", "2024-05-01T00:00:00Z"),
            "2024-05-06T09:00:00Z"
        );
        assert_eq!(
            next("cron(0 9 ? * MON#1 *)", "2024-05-06T09:00:00Z"),
            "2024-06-03T09:00:00Z"
        );
    }

    #[test]
    fn last_and_weekday_forms() {
        // L: the last day of the month (a leap February).
        assert_eq!(
            next("cron(0 0 L * ? *)", "2024-02-01T00:00:00Z"),
            "2024-02-29T00:00:00Z"
        );
        // LW: last weekday; 2024-08-31 is a Saturday.
        assert_eq!(
            next("cron(0 0 LW * ? *)", "2024-08-01T00:00:00Z"),
            "2024-08-30T00:00:00Z"
        );
        // 15W: 2024-06-15 is a Saturday, so Friday the 14th.
        assert_eq!(
            next("cron(0 0 15W * ? *)", "2024-06-01T00:00:00Z"),
            "2024-06-14T00:00:00Z"
        );
        // 1W: 2024-06-01 is a Saturday, so Monday the 3rd (stays in June).
        assert_eq!(
            next("cron(0 0 1W * ? *)", "2024-05-31T00:00:00Z"),
            "2024-06-03T00:00:00Z"
        );
        // 6L: the last Friday; May 2024 ends on Friday the 31st.
        assert_eq!(
            next("cron(0 0 ? * 6L *)", "2024-05-01T00:00:00Z"),
            "2024-05-31T00:00:00Z"
        );
        // L in day-of-week: Saturday.
        assert_eq!(
            next("cron(0 0 ? * L *)", "2024-05-01T00:00:00Z"),
            "2024-05-04T00:00:00Z"
        );
        // Names in any case, lists, wrapping ranges.
        assert_eq!(
            nexts(
                "cron(30 6 ? jan,Jul FRI-SUN 2025)",
                "2024-12-31T00:00:00Z",
                4
            ),
            [
                "2025-01-03T06:30:00Z",
                "2025-01-04T06:30:00Z",
                "2025-01-05T06:30:00Z",
                "2025-01-10T06:30:00Z"
            ]
        );
    }

    #[test]
    fn years_end_and_impossible_dates() {
        let s = Schedule::parse("cron(0 0 1 1 ? 2020)").expect("cron");
        assert_eq!(s.next_after(at("2021-01-01T00:00:00Z"), 0), None);
        let never = Schedule::parse("cron(0 0 30 2 ? *)").expect("cron");
        assert_eq!(never.next_after(at("2024-01-01T00:00:00Z"), 0), None);
        assert_eq!(
            next("cron(0 0 29 2 ? *)", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn cron_refusals() {
        for bad in [
            "cron(* * * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(0 0 1 * MON *)",
            "cron(0 0 * * ?)",
            "cron(0 0 * * ? * *)",
            "cron(60 0 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 0 * ? *)",
            "cron(0 0 * 13 ? *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 ? * FUN *)",
            "cron(0 0 * * ? 1969)",
            "cron(0 0 * * ? 2200)",
            "cron(0/0 0 * * ? *)",
            "cron(*/x 0 * * ? *)",
            "cron(0 0 ? * 2#6 *)",
            "cron(0 0 ? * 2#x *)",
            "cron(0 0 40W * ? *)",
            "cron(a b c d e f)",
            "cron(0  0 * * ? *)",
            "cron()",
        ] {
            let e = Schedule::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with(SCHEDULE_INVALID), "{bad}: {e}");
        }
        let e = Schedule::parse("cron(0 0 ? * FUN *)").expect_err("FUN");
        assert!(e.reason().contains("day-of-week"), "{}", e.reason());
    }
}
