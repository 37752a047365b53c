//! `$formatNumber` (XPath decimal-format pictures), `$formatBase`, `$formatInteger`
//! and `$parseInteger` (decimal, Roman, letter and English-word pictures).

use crate::error::{Error, Result};
use crate::functions::round_half_even;
use crate::value::{Obj, Val};

fn opt(o: Option<&Obj>, k: &str, d: &str) -> String {
    match o.and_then(|o| o.get(k)) {
        Some(Val::Str(s)) => s.to_string(),
        _ => d.to_string(),
    }
}

/// `$formatNumber(number, picture, options?)`.
pub fn format_number(n: f64, picture: &str, options: Option<&Obj>) -> Result<String> {
    let dec = opt(options, "decimal-separator", ".");
    let grp = opt(options, "grouping-separator", ",");
    let pct = opt(options, "percent", "%");
    let pml = opt(options, "per-mille", "\u{2030}");
    let minus = opt(options, "minus-sign", "-");
    let exp_sep = opt(options, "exponent-separator", "e");
    let dec_c = dec.chars().next().unwrap_or('.');
    let grp_c = grp.chars().next().unwrap_or(',');
    let exp_c = exp_sep.chars().next().unwrap_or('e');
    let bad = |m: &str| {
        Error::new(
            "D3080",
            format!("Invalid picture string for $formatNumber: {m}"),
        )
    };

    let subs: Vec<&str> = picture.split(';').collect();
    if subs.len() > 2 {
        return Err(bad("more than one pattern separator"));
    }
    let (pic, explicit_neg) = if n < 0.0 && subs.len() == 2 {
        (subs[1], true)
    } else {
        (subs[0], false)
    };
    let chars: Vec<char> = pic.chars().collect();
    let active = |c: char| c.is_ascii_digit() || c == '#' || c == dec_c || c == grp_c;
    let first = chars.iter().position(|&c| active(c));
    let Some(first) = first else {
        return Err(bad("no digit or # in the picture"));
    };
    let mut k = first;
    while k < chars.len() && active(chars[k]) {
        k += 1;
    }
    let mantissa = &chars[first..k];
    // An exponent separator followed by digits ends the mantissa (`0.00e0`).
    let mut exp_digits = 0;
    let mut rest = k;
    if k + 1 < chars.len() && chars[k] == exp_c && chars[k + 1].is_ascii_digit() {
        let mut j = k + 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        exp_digits = j - k - 1;
        rest = j;
    }
    let prefix: String = chars[..first].iter().collect();
    let suffix: String = chars[rest..].iter().collect();
    if suffix.chars().any(active) {
        return Err(bad("active characters after the number part"));
    }
    let f = Fmt {
        dec: &dec,
        grp: &grp,
        dec_c,
        grp_c,
        pct: &pct,
        pml: &pml,
        minus: &minus,
        exp_sep: &exp_sep,
    };
    finish(n, mantissa, &prefix, &suffix, exp_digits, explicit_neg, &f)
}

struct Fmt<'a> {
    dec: &'a str,
    grp: &'a str,
    dec_c: char,
    grp_c: char,
    pct: &'a str,
    pml: &'a str,
    minus: &'a str,
    exp_sep: &'a str,
}

fn finish(
    n: f64,
    mantissa: &[char],
    prefix: &str,
    suffix: &str,
    exp_digits: usize,
    explicit_neg: bool,
    f: &Fmt<'_>,
) -> Result<String> {
    let bad = |m: &str| {
        Error::new(
            "D3080",
            format!("Invalid picture string for $formatNumber: {m}"),
        )
    };
    let dpos = mantissa.iter().position(|&c| c == f.dec_c);
    if mantissa.iter().filter(|&&c| c == f.dec_c).count() > 1 {
        return Err(bad("more than one decimal separator"));
    }
    let (ip, fp): (&[char], &[char]) = match dpos {
        Some(d) => (&mantissa[..d], &mantissa[d + 1..]),
        None => (mantissa, &[]),
    };
    let min_int = ip.iter().filter(|c| c.is_ascii_digit()).count();
    let min_frac = fp.iter().filter(|c| c.is_ascii_digit()).count();
    let max_frac = min_frac + fp.iter().filter(|&&c| c == '#').count();
    // Grouping: positions of separators counted from the right of the integer part.
    let mut groups = Vec::new();
    let mut count = 0;
    for &c in ip.iter().rev() {
        if c == f.grp_c {
            groups.push(count);
        } else {
            count += 1;
        }
    }
    let regular = groups
        .first()
        .copied()
        .filter(|&g| g > 0 && groups.iter().enumerate().all(|(i, &x)| x == g * (i + 1)));

    let mut v = n.abs();
    let all = format!("{prefix}{suffix}");
    if all.contains(f.pct) {
        v *= 100.0;
    } else if all.contains(f.pml) {
        v *= 1000.0;
    }
    let mut exponent = 0i32;
    if exp_digits > 0 && v != 0.0 {
        let want = min_int.max(1) as i32;
        exponent = v.log10().floor() as i32 + 1 - want;
        v /= 10f64.powi(exponent);
    }
    let v = round_half_even(v, max_frac as i32);
    let text = format!("{:.*}", max_frac, v);
    let (int_s, frac_s) = text.split_once('.').unwrap_or((&text, ""));
    let mut frac: String = frac_s.to_string();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int: String = int_s.trim_start_matches('0').to_string();
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if int.is_empty() && frac.is_empty() {
        int.push('0');
    }
    // Insert grouping separators.
    let digits: Vec<char> = int.chars().collect();
    let mut grouped = String::new();
    for (i, c) in digits.iter().enumerate() {
        let from_right = digits.len() - i;
        if i > 0 {
            let sep = match regular {
                Some(g) => from_right.is_multiple_of(g),
                None => groups.contains(&from_right),
            };
            if sep {
                grouped.push_str(f.grp);
            }
        }
        grouped.push(*c);
    }
    let mut out = String::new();
    out.push_str(prefix);
    // The sign is decided before rounding, as in XPath: -0.004 with 0.00 is -0.00.
    if n < 0.0 && !explicit_neg {
        out.push_str(f.minus);
    }
    out.push_str(&grouped);
    if !frac.is_empty() {
        out.push_str(f.dec);
        out.push_str(&frac);
    }
    if exp_digits > 0 {
        out.push_str(f.exp_sep);
        if exponent < 0 {
            out.push_str(f.minus);
        }
        out.push_str(&format!("{:0w$}", exponent.unsigned_abs(), w = exp_digits));
    }
    out.push_str(suffix);
    Ok(out)
}

/// `$formatBase`.
pub fn format_base(n: f64, radix: u32) -> String {
    let neg = n < 0.0;
    let mut x = n.abs() as u128;
    if x == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while x > 0 {
        let d = (x % radix as u128) as u32;
        out.push(std::char::from_digit(d, radix).unwrap_or('?'));
        x /= radix as u128;
    }
    if neg {
        out.push('-');
    }
    out.iter().rev().collect()
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [(u64, &str); 4] = [
    (1_000_000_000_000, "trillion"),
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
];

fn words(n: u64) -> String {
    if n < 20 {
        return ONES[n as usize].into();
    }
    if n < 100 {
        let t = TENS[(n / 10) as usize];
        return if n.is_multiple_of(10) {
            t.into()
        } else {
            format!("{t}-{}", ONES[(n % 10) as usize])
        };
    }
    if n < 1000 {
        let h = format!("{} hundred", ONES[(n / 100) as usize]);
        return if n.is_multiple_of(100) {
            h
        } else {
            format!("{h} and {}", words(n % 100))
        };
    }
    for (scale, name) in SCALES {
        if n >= scale {
            let head = format!("{} {name}", words(n / scale));
            let rest = n % scale;
            return if rest == 0 {
                head
            } else if rest < 100 {
                format!("{head} and {}", words(rest))
            } else {
                format!("{head}, {}", words(rest))
            };
        }
    }
    n.to_string()
}

const ROMAN: [(u64, &str); 13] = [
    (1000, "m"),
    (900, "cm"),
    (500, "d"),
    (400, "cd"),
    (100, "c"),
    (90, "xc"),
    (50, "l"),
    (40, "xl"),
    (10, "x"),
    (9, "ix"),
    (5, "v"),
    (4, "iv"),
    (1, "i"),
];

fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    while n > 0 {
        n -= 1;
        out.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    out.iter().rev().collect()
}

/// `$formatInteger(number, picture)`.
pub fn format_integer(n: f64, picture: &str) -> Result<String> {
    let neg = n < 0.0;
    let v = n.abs().floor();
    if v > 1e15 {
        return Err(Error::new(
            "D3130",
            "The number is too large for $formatInteger",
        ));
    }
    let u = v as u64;
    let sign = if neg { "-" } else { "" };
    let body = match picture {
        "w" => words(u),
        "W" => words(u).to_uppercase(),
        "Ww" => words(u)
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) if w != "and" => f.to_uppercase().chain(c).collect(),
                    _ => w.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        "i" | "I" => {
            let mut x = u;
            let mut out = String::new();
            for (val, s) in ROMAN {
                while x >= val {
                    out.push_str(s);
                    x -= val;
                }
            }
            if picture == "I" {
                out.to_uppercase()
            } else {
                out
            }
        }
        "a" => letters(u),
        "A" => letters(u).to_uppercase(),
        p if !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_digit() || c == '#' || c == ',') =>
        {
            let min = p.chars().filter(|c| c.is_ascii_digit()).count();
            let mut digits = format!("{u:0min$}");
            // Regular grouping from the picture's last separator.
            if let Some(pos) = p.rfind(',') {
                let g = p[pos + 1..]
                    .chars()
                    .filter(|c| c.is_ascii_digit() || *c == '#')
                    .count();
                if g > 0 {
                    let cs: Vec<char> = digits.chars().collect();
                    let mut out = String::new();
                    for (i, c) in cs.iter().enumerate() {
                        if i > 0 && (cs.len() - i).is_multiple_of(g) {
                            out.push(',');
                        }
                        out.push(*c);
                    }
                    digits = out;
                }
            }
            digits
        }
        _ => {
            return Err(Error::new(
                "D3130",
                format!("Unsupported picture for $formatInteger: {picture}"),
            ));
        }
    };
    Ok(format!("{sign}{body}"))
}

/// `$parseInteger(string, picture)` for the pictures `$formatInteger` writes (not words).
pub fn parse_integer(s: &str, picture: &str) -> Result<f64> {
    let bad = || {
        Error::new(
            "D3137",
            format!("Unable to parse \"{s}\" with picture \"{picture}\""),
        )
    };
    match picture {
        "i" | "I" => {
            let t = s.to_lowercase();
            let val = |c: char| {
                ROMAN
                    .iter()
                    .find(|(_, r)| r.len() == 1 && r.starts_with(c))
                    .map(|(v, _)| *v)
            };
            let cs: Vec<u64> = t.chars().map(val).collect::<Option<_>>().ok_or_else(bad)?;
            let mut total = 0i64;
            for i in 0..cs.len() {
                if i + 1 < cs.len() && cs[i] < cs[i + 1] {
                    total -= cs[i] as i64;
                } else {
                    total += cs[i] as i64;
                }
            }
            Ok(total as f64)
        }
        "a" | "A" => {
            let mut total = 0f64;
            for c in s.to_lowercase().chars() {
                if !c.is_ascii_lowercase() {
                    return Err(bad());
                }
                total = total * 26.0 + (c as u8 - b'a' + 1) as f64;
            }
            Ok(total)
        }
        p if p
            .chars()
            .all(|c| c.is_ascii_digit() || c == '#' || c == ',') =>
        {
            let (neg, body) = match s.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, s),
            };
            let digits: String = body.chars().filter(|c| *c != ',').collect();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let v: f64 = digits.parse().map_err(|_| bad())?;
            Ok(if neg { -v } else { v })
        }
        _ => Err(bad()),
    }
}
