//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): keys ending in `.$`
//! take a path or an intrinsic call; every other key is copied as it is.

use crate::error::{Failure, errors};
use crate::intrinsics::{self, Entropy};
use crate::path::{self, PathError, Roots};
use serde_json::{Map, Value};

/// Builds the payload described by `template` from the given documents.
pub fn evaluate(
    template: &Value,
    roots: Roots<'_>,
    rng: &mut dyn Entropy,
) -> Result<Value, Failure> {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(key) = k.strip_suffix(".$") {
                    let Value::String(expr) = v else {
                        return Err(Failure::runtime(format!(
                            "the value of the field '{k}' must be a string"
                        )));
                    };
                    out.insert(key.to_string(), evaluate_expression(k, expr, roots, rng)?);
                } else {
                    out.insert(k.clone(), evaluate(v, roots, rng)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .map(|v| evaluate(v, roots, rng))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Evaluates the value of one `.$` field: an intrinsic call or a path.
pub fn evaluate_expression(
    field: &str,
    expr: &str,
    roots: Roots<'_>,
    rng: &mut dyn Entropy,
) -> Result<Value, Failure> {
    if intrinsics::is_intrinsic(expr) {
        return intrinsics::evaluate(expr, roots, rng);
    }
    path::read(expr, roots).map_err(|e| match e {
        PathError::NotFound(_) => Failure::new(errors::PARAMETER_PATH_FAILURE, format!("The JSONPath '{expr}' specified for the field '{field}' could not be found in the input '{}'", roots.input)),
        PathError::Invalid(_) => Failure::runtime(format!("The value '{expr}' of the field '{field}' is not a valid path")),
    })
}

/// Checks a template statically; returns `(json location suffix, message)` problems.
pub fn check(template: &Value, loc: &str, out: &mut Vec<(String, String)>) {
    match template {
        Value::Object(m) => {
            for (k, v) in m {
                let here = format!("{loc}.{k}");
                if k.ends_with(".$") {
                    match v {
                        Value::String(s) if intrinsics::is_intrinsic(s) => {
                            if let Err(e) = intrinsics::parse(s) {
                                out.push((here, format!("invalid intrinsic function: {e}")));
                            }
                        }
                        Value::String(s) => {
                            if !path::is_valid_path(s) {
                                out.push((here, format!("'{s}' is not a valid JSONPath")));
                            }
                        }
                        _ => out.push((
                            here,
                            "a field ending in '.$' must have a string value".into(),
                        )),
                    }
                } else {
                    check(v, &here, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check(v, &format!("{loc}[{i}]"), out);
            }
        }
        _ => {}
    }
}
