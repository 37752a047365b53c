//! `$now`, `$millis`, `$fromMillis`, `$toMillis`: ISO 8601 and XPath-style picture
//! strings (`[Y0001]-[M01]-[D01]`, `[H01]:[m01]`, `[MNn]`, `[FNn]`, `[Z01:01]`...).

use crate::error::{Error, Result};
use crate::eval::{Evaluator, R};
use crate::value::Val;

const DEFAULT_PICTURE: &str = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]";
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn sig(name: &str, i: usize) -> Error {
    Error::new(
        "T0410",
        format!(
            "Argument {} of function \"{name}\" does not match function signature",
            i + 1
        ),
    )
}

fn str_arg<'a>(args: &'a [Option<Val>], i: usize, name: &str) -> Result<Option<&'a str>> {
    match args.get(i).and_then(|a| a.as_ref()) {
        None => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(_) => Err(sig(name, i)),
    }
}

pub fn call(ev: &mut Evaluator<'_>, name: &str, args: &[Option<Val>]) -> R {
    let now = match ev.now {
        Some(n) => n,
        None => {
            let n = ev.host.now_millis();
            ev.now = Some(n);
            n
        }
    };
    match name {
        "millis" => Ok(Some(Val::Num(now as f64))),
        "now" => {
            let pic = str_arg(args, 0, name)?.unwrap_or(DEFAULT_PICTURE);
            let tz = str_arg(args, 1, name)?;
            Ok(Some(Val::string(format(now, pic, tz)?)))
        }
        "fromMillis" => {
            let ms = match args.first().and_then(|a| a.as_ref()) {
                None => return Ok(None),
                Some(Val::Num(n)) => *n,
                Some(_) => return Err(sig(name, 0)),
            };
            if !ms.is_finite() || ms.abs() > 8.64e15 {
                return Err(Error::new("D3110", "The millisecond value is out of range"));
            }
            let pic = str_arg(args, 1, name)?.unwrap_or(DEFAULT_PICTURE);
            let tz = str_arg(args, 2, name)?;
            Ok(Some(Val::string(format(ms.floor() as i64, pic, tz)?)))
        }
        "toMillis" => {
            let Some(s) = str_arg(args, 0, name)? else {
                return Ok(None);
            };
            let ms = match str_arg(args, 1, name)? {
                None => parse_iso(s).ok_or_else(|| {
                    Error::new(
                        "D3110",
                        format!("The timestamp \"{s}\" is not in ISO 8601 format"),
                    )
                })?,
                Some(pic) => parse_picture(s, pic)?,
            };
            Ok(Some(Val::Num(ms as f64)))
        }
        _ => Err(Error::new("T1006", "Attempted to invoke a non-function")),
    }
}

/// Parses a timezone offset `±HHMM` or `±HH:MM` into minutes.
fn parse_offset(tz: &str) -> Option<i64> {
    let (sign, rest) = match tz.chars().next()? {
        '+' => (1, &tz[1..]),
        '-' => (-1, &tz[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 60 + m))
}

/// Parses ISO 8601: `YYYY[-MM[-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]]]`; no offset means UTC.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let y = num(0, 4)?;
    let mut i = 4;
    let (mut mo, mut d) = (1, 1);
    if b.get(i) == Some(&b'-') {
        mo = num(i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'-') {
            d = num(i + 1, 2)?;
            i += 3;
        }
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut ms) = (0, 0, 0, 0);
    let mut offset = 0;
    if matches!(b.get(i), Some(b'T') | Some(b't') | Some(b' ')) {
        h = num(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        mi = num(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            sec = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j == start {
                    return None;
                }
                let frac = &s[start..j];
                let f3: String = frac.chars().chain("000".chars()).take(3).collect();
                ms = f3.parse().ok()?;
                i = j;
            }
        }
        if h > 24 || mi > 59 || sec > 60 {
            return None;
        }
        match b.get(i) {
            None => {}
            Some(b'Z') | Some(b'z') => i += 1,
            Some(b'+') | Some(b'-') => {
                offset = parse_offset(&s[i..])?;
                i = s.len();
            }
            _ => return None,
        }
    }
    if i != s.len() {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi - offset) * 60_000 + sec * 1000 + ms)
}

struct Parts {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    ms: i64,
    dow: i64,
    doy: i64,
    offset: i64,
}

fn parts(ms: i64, offset: i64) -> Parts {
    let local = ms + offset * 60_000;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    Parts {
        y,
        mo,
        d,
        h: rem / 3_600_000,
        mi: rem / 60_000 % 60,
        s: rem / 1000 % 60,
        ms: rem % 1000,
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        dow: (days + 3).rem_euclid(7),
        doy: days - days_from_civil(y, 1, 1) + 1,
        offset,
    }
}

fn bad_picture(p: &str) -> Error {
    Error::new(
        "D3135",
        format!("Invalid or unsupported date/time picture component: [{p}]"),
    )
}

fn name_case(name: &str, pres: &str) -> String {
    match pres {
        "N" => name.to_uppercase(),
        "n" => name.to_lowercase(),
        _ => name.to_string(),
    }
}

/// Formats a timestamp with an XPath picture string.
pub fn format(ms: i64, picture: &str, tz: Option<&str>) -> Result<String> {
    let offset = match tz {
        None => 0,
        Some(t) => {
            parse_offset(t).ok_or_else(|| Error::new("D3134", format!("Invalid timezone: {t}")))?
        }
    };
    let p = parts(ms, offset);
    let mut out = String::new();
    let chars: Vec<char> = picture.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            if chars.get(i + 1) == Some(&'[') {
                out.push('[');
                i += 2;
                continue;
            }
            let end = chars[i..]
                .iter()
                .position(|&x| x == ']')
                .map(|k| i + k)
                .ok_or_else(|| Error::new("D3135", "No closing bracket in date/time picture"))?;
            let spec: String = chars[i + 1..end]
                .iter()
                .filter(|c| !c.is_whitespace())
                .collect();
            out.push_str(&component(&p, &spec)?);
            i = end + 1;
            continue;
        }
        if c == ']' && chars.get(i + 1) == Some(&']') {
            out.push(']');
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

fn component(p: &Parts, spec: &str) -> Result<String> {
    let mut cs = spec.chars();
    let Some(letter) = cs.next() else {
        return Err(bad_picture(spec));
    };
    // `pres[,min[-max]]`: the width modifier pads numbers to `min` and cuts names
    // (and two-digit years) to `max`.
    let rest: String = cs.collect();
    let (pres, width) = match rest.split_once(',') {
        Some((p, w)) => (p.to_string(), w.to_string()),
        None => (rest, String::new()),
    };
    let (min_w, max_w) = {
        let (a, b) = width.split_once('-').unwrap_or((width.as_str(), ""));
        (a.parse::<usize>().ok(), b.parse::<usize>().ok())
    };
    let digits = |v: i64, default_width: usize| -> String {
        // Mandatory digits set the minimum width; `#` marks optional ones.
        let mandatory = pres.chars().filter(|c| c.is_ascii_digit()).count();
        let width = if mandatory > 0 {
            mandatory
        } else {
            min_w.unwrap_or(default_width)
        };
        format!("{:0width$}", v, width = width.min(64))
    };
    let cut = |name: String| -> String {
        match max_w {
            Some(m) => name.chars().take(m).collect(),
            None => name,
        }
    };
    Ok(match letter {
        'Y' => {
            let w = pres.chars().filter(|c| c.is_ascii_digit()).count();
            if w == 2 || max_w == Some(2) {
                format!("{:02}", p.y.rem_euclid(100))
            } else {
                digits(p.y, 1)
            }
        }
        'M' if pres.starts_with('N') || pres.starts_with('n') => {
            cut(name_case(MONTHS[(p.mo - 1) as usize], &pres))
        }
        'M' => digits(p.mo, 1),
        'D' => digits(p.d, 1),
        'd' => digits(p.doy, 1),
        'F' if pres.starts_with('N') || pres.starts_with('n') || pres.is_empty() => {
            let name = DAYS[p.dow as usize];
            cut(if pres.is_empty() {
                name.to_lowercase()
            } else {
                name_case(name, &pres)
            })
        }
        'F' => digits(p.dow + 1, 1),
        'H' => digits(p.h, 1),
        'h' => {
            let h = if p.h % 12 == 0 { 12 } else { p.h % 12 };
            digits(h, 1)
        }
        'P' => {
            let s = if p.h < 12 { "am" } else { "pm" };
            if pres.starts_with('N') {
                s.to_uppercase()
            } else {
                s.to_string()
            }
        }
        'm' => digits(p.mi, 2),
        's' => digits(p.s, 2),
        'f' => {
            let w = pres.chars().filter(|c| c.is_ascii_digit()).count().max(1);
            let frac = format!("{:03}", p.ms);
            let mut s: String = frac.chars().chain(std::iter::repeat('0')).take(w).collect();
            if w < 3 {
                s = frac[..w].to_string();
            }
            s
        }
        'Z' | 'z' => {
            if pres.ends_with('t') && p.offset == 0 {
                return Ok("Z".into());
            }
            let sign = if p.offset < 0 { '-' } else { '+' };
            let (h, m) = (p.offset.abs() / 60, p.offset.abs() % 60);
            let core = pres.trim_end_matches('t');
            let body = if core.contains(':') || core.is_empty() {
                format!("{sign}{h:02}:{m:02}")
            } else if core.len() <= 2 && m == 0 {
                format!("{sign}{h:0w$}", w = core.len().max(1))
            } else {
                format!("{sign}{h:02}{m:02}")
            };
            if letter == 'z' {
                format!("GMT{body}")
            } else {
                body
            }
        }
        _ => return Err(bad_picture(spec)),
    })
}

/// `$toMillis` with a picture: numeric components (and month names) only.
fn parse_picture(s: &str, picture: &str) -> Result<i64> {
    let bad = || {
        Error::new(
            "D3110",
            format!("The timestamp \"{s}\" does not match the picture \"{picture}\""),
        )
    };
    let mut pattern = String::from("^");
    let mut fields: Vec<char> = Vec::new();
    let chars: Vec<char> = picture.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let end = chars[i..]
                .iter()
                .position(|&x| x == ']')
                .map(|k| i + k)
                .ok_or_else(|| Error::new("D3135", "No closing bracket in date/time picture"))?;
            let spec: String = chars[i + 1..end].iter().collect();
            let letter = spec.chars().next().ok_or_else(|| bad_picture(&spec))?;
            let pres = &spec[letter.len_utf8()..];
            match letter {
                'M' if pres.starts_with('N') || pres.starts_with('n') => {
                    pattern.push_str("([A-Za-z]+)")
                }
                'Y' | 'M' | 'D' | 'd' | 'H' | 'h' | 'm' | 's' | 'f' => pattern.push_str("([0-9]+)"),
                'Z' => pattern.push_str("(Z|[+-][0-9]{2}:?[0-9]{2})"),
                'P' => pattern.push_str("([AaPp][Mm])"),
                'F' => pattern.push_str("(?:[A-Za-z]+|[0-9]+)"),
                _ => return Err(bad_picture(&spec)),
            }
            if letter != 'F' {
                fields.push(letter);
            }
            i = end + 1;
        } else {
            pattern.push_str(&regex::escape(&chars[i].to_string()));
            i += 1;
        }
    }
    pattern.push('$');
    let re = regex::Regex::new(&pattern).map_err(|_| bad())?;
    let caps = re.captures(s).ok_or_else(bad)?;
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut ms, mut off) =
        (1970, 1, 1, 0, 0, 0, 0, 0);
    let mut pm = None;
    let mut doy = None;
    for (k, letter) in fields.iter().enumerate() {
        let t = caps.get(k + 1).map(|m| m.as_str()).unwrap_or("");
        // Bounded so that the date arithmetic below cannot overflow.
        let n = || {
            t.parse::<i64>()
                .ok()
                .filter(|v| v.abs() <= 1_000_000)
                .ok_or_else(bad)
        };
        match letter {
            'Y' => y = n()?,
            'M' => {
                mo = match t.parse::<i64>() {
                    Ok(v) => v,
                    Err(_) => {
                        let low = t.to_lowercase();
                        MONTHS
                            .iter()
                            .position(|m| m.to_lowercase().starts_with(&low) && low.len() >= 3)
                            .map(|p| p as i64 + 1)
                            .ok_or_else(bad)?
                    }
                }
            }
            'D' => d = n()?,
            'd' => doy = Some(n()?),
            'H' | 'h' => h = n()?,
            'm' => mi = n()?,
            's' => sec = n()?,
            'f' => {
                let f3: String = t.chars().chain("000".chars()).take(3).collect();
                ms = f3.parse().map_err(|_| bad())?;
            }
            'Z' => {
                off = if t == "Z" {
                    0
                } else {
                    parse_offset(t).ok_or_else(bad)?
                }
            }
            'P' => pm = Some(t.to_lowercase() == "pm"),
            _ => {}
        }
    }
    if let Some(pm) = pm {
        h %= 12;
        if pm {
            h += 12;
        }
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = match doy {
        Some(n) => days_from_civil(y, 1, 1) + n - 1,
        None => days_from_civil(y, mo, d),
    };
    Ok(((days * 24 + h) * 60 + mi - off) * 60_000 + sec * 1000 + ms)
}
