//! The intrinsic functions themselves, each checking its arguments as AWS does.

use super::Entropy;
use crate::error::Failure;
use crate::path::type_name;
use base64::Engine as _;
use serde_json::{Map, Value};

type R = Result<Value, Failure>;

fn fail(name: &str, msg: impl std::fmt::Display) -> Failure {
    Failure::intrinsic(format!("{name}: {msg}"))
}

fn arity(name: &str, args: &[Value], min: usize, max: usize) -> Result<(), Failure> {
    if args.len() < min || args.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(fail(
            name,
            format!("expects {want} arguments, got {}", args.len()),
        ));
    }
    Ok(())
}

fn string<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a str, Failure> {
    v.as_str().ok_or_else(|| {
        fail(
            name,
            format!("{what} must be a string, got {}", type_name(v)),
        )
    })
}

fn array<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a Vec<Value>, Failure> {
    v.as_array().ok_or_else(|| {
        fail(
            name,
            format!("{what} must be an array, got {}", type_name(v)),
        )
    })
}

fn integer(name: &str, v: &Value, what: &str) -> Result<i64, Failure> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(fail(name, format!("{what} must be an integer, got {v}"))),
    }
}

/// Java's `Math.round`: half rounds up (towards positive infinity).
fn java_round(name: &str, v: &Value, what: &str) -> Result<i64, Failure> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    let f = v.as_f64().ok_or_else(|| {
        fail(
            name,
            format!("{what} must be a number, got {}", type_name(v)),
        )
    })?;
    Ok((f + 0.5).floor() as i64)
}

const MAX_STRING: usize = 10_000;

/// Calls the intrinsic `name` with evaluated arguments.
pub fn call(name: &str, args: Vec<Value>, rng: &mut dyn Entropy) -> R {
    match name {
        "States.Format" => format(name, &args),
        "States.StringToJson" => {
            arity(name, &args, 1, 1)?;
            let s = string(name, &args[0], "the argument")?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s)
                .map(normalize_zero)
                .map_err(|e| fail(name, format!("cannot parse '{s}' as JSON: {e}")))
        }
        "States.JsonToString" => {
            arity(name, &args, 1, 1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            arity(name, &args, 2, 2)?;
            let a = array(name, &args[0], "the first argument")?;
            let size = integer(name, &args[1], "the chunk size")?;
            if size <= 0 {
                return Err(fail(name, "the chunk size must be greater than 0"));
            }
            Ok(Value::Array(
                a.chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            arity(name, &args, 2, 2)?;
            let a = array(name, &args[0], "the first argument")?;
            Ok(Value::Bool(a.contains(&args[1])))
        }
        "States.ArrayRange" => {
            arity(name, &args, 3, 3)?;
            let start = integer(name, &args[0], "the start")?;
            let end = integer(name, &args[1], "the end")?;
            let step = integer(name, &args[2], "the step")?;
            if step == 0 {
                return Err(fail(name, "the step cannot be 0"));
            }
            let mut out = Vec::new();
            let mut x = start;
            while (step > 0 && x <= end) || (step < 0 && x >= end) {
                out.push(Value::from(x));
                if out.len() > 1000 {
                    return Err(fail(name, "the result cannot have more than 1000 items"));
                }
                x = match x.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            arity(name, &args, 2, 2)?;
            let a = array(name, &args[0], "the first argument")?;
            let i = integer(name, &args[1], "the index")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i))
                .cloned()
                .ok_or_else(|| {
                    fail(
                        name,
                        format!(
                            "index {i} is out of bounds for an array of {} items",
                            a.len()
                        ),
                    )
                })
        }
        "States.ArrayLength" => {
            arity(name, &args, 1, 1)?;
            Ok(Value::from(array(name, &args[0], "the argument")?.len()))
        }
        "States.ArrayUnique" => {
            arity(name, &args, 1, 1)?;
            let a = array(name, &args[0], "the argument")?;
            let mut out: Vec<Value> = Vec::new();
            for v in a {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            arity(name, &args, 1, 1)?;
            let s = string(name, &args[0], "the argument")?;
            if s.chars().count() > MAX_STRING {
                return Err(fail(
                    name,
                    format!("the input cannot be longer than {MAX_STRING} characters"),
                ));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }
        "States.Base64Decode" => {
            arity(name, &args, 1, 1)?;
            let s = string(name, &args[0], "the argument")?;
            if s.chars().count() > MAX_STRING {
                return Err(fail(
                    name,
                    format!("the input cannot be longer than {MAX_STRING} characters"),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| fail(name, format!("invalid base64: {e}")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| fail(name, "the decoded data is not UTF-8"))
        }
        "States.Hash" => {
            arity(name, &args, 2, 2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                Value::Null => return Err(fail(name, "the data cannot be null")),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_STRING {
                return Err(fail(
                    name,
                    format!("the data cannot be longer than {MAX_STRING} characters"),
                ));
            }
            let alg = string(name, &args[1], "the algorithm")?;
            Ok(Value::String(hash(name, data.as_bytes(), alg)?))
        }
        "States.JsonMerge" => {
            arity(name, &args, 3, 3)?;
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(fail(name, "the first two arguments must be objects"));
            };
            match &args[2] {
                Value::Bool(false) => {}
                Value::Bool(true) => return Err(fail(name, "deep merge (true) is not supported")),
                _ => return Err(fail(name, "the third argument must be the boolean false")),
            }
            let mut out: Map<String, Value> = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        "States.MathRandom" => {
            arity(name, &args, 2, 3)?;
            let start = integer(name, &args[0], "the start")?;
            let end = integer(name, &args[1], "the end")?;
            if end <= start {
                return Err(fail(name, "the end must be greater than the start"));
            }
            let r = match args.get(2) {
                Some(seed) => splitmix(integer(name, seed, "the seed")? as u64),
                None => rng.next_u64(),
            };
            let span = (end - start) as u64;
            Ok(Value::from(start + (r % span) as i64))
        }
        "States.MathAdd" => {
            arity(name, &args, 2, 2)?;
            let a = java_round(name, &args[0], "the first argument")?;
            let b = java_round(name, &args[1], "the second argument")?;
            a.checked_add(b)
                .map(Value::from)
                .ok_or_else(|| fail(name, "the sum overflows"))
        }
        "States.StringSplit" => {
            arity(name, &args, 2, 2)?;
            let s = string(name, &args[0], "the first argument")?;
            let d = string(name, &args[1], "the delimiters")?;
            let parts = s
                .split(|c| d.contains(c))
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect();
            Ok(Value::Array(parts))
        }
        "States.UUID" => {
            arity(name, &args, 0, 0)?;
            Ok(Value::String(uuid_v4(rng.next_u64(), rng.next_u64())))
        }
        other => Err(Failure::intrinsic(format!(
            "unknown intrinsic function {other}"
        ))),
    }
}

/// JSON has no negative zero for AWS: `-0` parses to `0`.
pub fn normalize_zero(v: Value) -> Value {
    match v {
        Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => Value::from(0),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize_zero).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, normalize_zero(v))).collect())
        }
        other => other,
    }
}

fn format(name: &str, args: &[Value]) -> R {
    let Some((tmpl, rest)) = args.split_first() else {
        return Err(fail(name, "expects a template argument"));
    };
    let tmpl = string(name, tmpl, "the template")?;
    let mut out = String::new();
    let mut used = 0;
    let mut chars = tmpl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('{') | Some('}')) => out.extend(chars.next()),
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let arg = rest
                    .get(used)
                    .ok_or_else(|| fail(name, "more {} placeholders than arguments"))?;
                out.push_str(&format_arg(arg));
                used += 1;
            }
            c => out.push(c),
        }
    }
    if used != rest.len() {
        return Err(fail(
            name,
            format!("{} arguments for {used} placeholders", rest.len()),
        ));
    }
    Ok(Value::String(out))
}

/// How `States.Format` prints a value: strings raw, objects and arrays in Java's
/// `Map.toString()` style (`{a=1, b=[]}`).
fn format_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(format_arg).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", format_arg(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn hash(name: &str, data: &[u8], alg: &str) -> Result<String, Failure> {
    use sha2::Digest;
    let bytes: Vec<u8> = match alg {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        other => {
            return Err(fail(
                name,
                format!(
                    "unsupported hash algorithm '{other}' (use MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                ),
            ));
        }
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A version-4 UUID from 128 random bits.
pub fn uuid_v4(hi: u64, lo: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&hi.to_be_bytes());
    b[8..].copy_from_slice(&lo.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed(u64);
    impl Entropy for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0 = splitmix(self.0);
            self.0
        }
    }

    fn c(name: &str, args: Value) -> R {
        let Value::Array(a) = args else { panic!() };
        call(name, a, &mut Fixed(1))
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            c("States.ArrayRange", json!([1, 1000, 1]))
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1000
        );
        assert!(c("States.ArrayRange", json!([0, 1000, 1])).is_err());
        assert!(c("States.ArrayRange", json!([0, 10, 0])).is_err());
        assert!(c("States.Base64Encode", json!(["a".repeat(10_001)])).is_err());
        assert!(c("States.Base64Encode", json!(["a".repeat(10_000)])).is_ok());
        assert!(c("States.JsonMerge", json!([{}, {}, true])).is_err());
        assert!(c("States.Hash", json!(["x", "SHA-3"])).is_err());
        assert_eq!(
            c("States.Format", json!(["a \\{\\} {}", 1])).unwrap(),
            json!("a {} 1")
        );
    }

    #[test]
    fn uuid_shape() {
        let u = c("States.UUID", json!([])).unwrap();
        let s = u.as_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
    }

    #[test]
    fn math_random_bounds() {
        for seed in 0..50 {
            let v = c("States.MathRandom", json!([3, 7, seed]))
                .unwrap()
                .as_i64()
                .unwrap();
            assert!((3..7).contains(&v));
        }
    }
}
