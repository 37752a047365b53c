//! Per-state data flow: the JSONPath chain (InputPath → Parameters → ResultSelector →
//! ResultPath → OutputPath) and its JSONata counterpart (Arguments, Output, Assign).

use crate::definition::{QueryLanguage, State};
use crate::error::{Failure, errors};
use crate::intrinsics::Entropy;
use crate::jsonata;
use crate::path::{self, Context, PathError, Roots};
use crate::payload;
use serde_json::{Map, Value, json};

/// What a state sees: its raw input, the context object and the variables.
pub struct Scope<'a> {
    /// The state's raw input.
    pub input: &'a Value,
    /// The context object.
    pub context: &'a Context<'a>,
    /// Variables in scope.
    pub vars: &'a Map<String, Value>,
    /// Time and randomness for JSONata's `$now`, `$random`...
    pub ambient: jsonata::Ambient,
}

impl Scope<'_> {
    fn roots<'b>(&'b self, input: &'b Value) -> Roots<'b> {
        Roots {
            input,
            context: self.context,
            variables: self.vars,
        }
    }

    /// `$states` for JSONata.
    fn states_var(
        &self,
        result: Option<&Value>,
        error_output: Option<&Value>,
    ) -> Map<String, Value> {
        let mut states = json!({"input": self.input, "context": self.context.get()});
        if let Some(r) = result {
            states["result"] = r.clone();
        }
        if let Some(e) = error_output {
            states["errorOutput"] = e.clone();
        }
        let mut vars = self.vars.clone();
        vars.insert("states".into(), states);
        vars
    }

    /// Evaluates a JSONata template (strings `{% ... %}` are expressions).
    /// `field` names the field in errors (`Output`, `Arguments`...).
    pub fn jsonata(
        &self,
        field: &str,
        template: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
    ) -> Result<Value, Failure> {
        jsonata::evaluate_template(
            field,
            template,
            &self.states_var(result, error_output),
            self.ambient,
        )
    }

    /// Evaluates one JSONata expression (without `{% %}`).
    pub fn jsonata_expr(&self, field: &str, expr: &str) -> Result<Value, Failure> {
        jsonata::evaluate(field, expr, &self.states_var(None, None), self.ambient)
    }
}

fn path_failure(p: &str, field: &str, e: PathError, input: &Value) -> Failure {
    match e {
        PathError::NotFound(_) => Failure::runtime(format!(
            "An error occurred while executing the state. Invalid path '{p}' : The {field} could not be found in the input '{input}'"
        )),
        PathError::Invalid(_) => Failure::runtime(format!("Invalid path '{p}' in {field}")),
    }
}

/// `InputPath` (JSONPath only): `null` gives `{}`.
pub fn effective_input(st: &State, scope: &Scope<'_>) -> Result<Value, Failure> {
    if st.query_language == QueryLanguage::Jsonata {
        return Ok(scope.input.clone());
    }
    match &st.input_path {
        None => Ok(json!({})),
        Some(p) if p == "$" => Ok(scope.input.clone()),
        Some(p) => path::read(p, scope.roots(scope.input))
            .map_err(|e| path_failure(p, "InputPath", e, scope.input)),
    }
}

/// `Parameters` (or JSONata `Arguments`) applied to the effective input.
pub fn parameters(
    st: &State,
    scope: &Scope<'_>,
    effective: &Value,
    template: Option<&Value>,
    rng: &mut dyn Entropy,
) -> Result<Value, Failure> {
    let Some(t) = template else {
        return Ok(effective.clone());
    };
    match st.query_language {
        QueryLanguage::JsonPath => payload::evaluate(t, scope.roots(effective), rng),
        QueryLanguage::Jsonata => scope.jsonata("Arguments", t, None, None),
    }
}

/// `ResultSelector` applied to a raw result (JSONPath only).
pub fn select_result(
    st: &State,
    scope: &Scope<'_>,
    raw: Value,
    rng: &mut dyn Entropy,
) -> Result<Value, Failure> {
    match (&st.result_selector, st.query_language) {
        (Some(t), QueryLanguage::JsonPath) => payload::evaluate(t, scope.roots(&raw), rng),
        _ => Ok(raw),
    }
}

/// The state's output from its result: `ResultPath` then `OutputPath` (JSONPath), or
/// `Output` (JSONata; the default is the result when there is one, else the input).
pub fn output(
    st: &State,
    scope: &Scope<'_>,
    result: Option<Value>,
    output_override: Option<&Value>,
) -> Result<Value, Failure> {
    if st.query_language == QueryLanguage::Jsonata {
        let out_t = output_override.or(st.output.as_ref());
        return match out_t {
            Some(t) => scope.jsonata("Output", t, result.as_ref(), None),
            None => Ok(result.unwrap_or_else(|| scope.input.clone())),
        };
    }
    let merged = match (result, &st.result_path) {
        (None, _) | (_, None) => scope.input.clone(),
        (Some(r), Some(rp)) => {
            let mut doc = scope.input.clone();
            rp.set(&mut doc, r).map_err(|e| {
                Failure::new(
                    errors::RESULT_PATH_MATCH_FAILURE,
                    format!("Unable to apply ResultPath to input '{}': {e}", scope.input),
                )
            })?;
            doc
        }
    };
    filter_output(st, scope, merged)
}

/// `OutputPath` alone (JSONPath): `null` gives `{}`.
pub fn filter_output(st: &State, scope: &Scope<'_>, doc: Value) -> Result<Value, Failure> {
    match &st.output_path {
        None => Ok(json!({})),
        Some(p) if p == "$" => Ok(doc),
        Some(p) => {
            path::read(p, scope.roots(&doc)).map_err(|e| path_failure(p, "OutputPath", e, &doc))
        }
    }
}

/// Evaluates `Assign` against the values at state entry (`result` is `$` in JSONPath mode
/// for Task/Parallel/Map, or `$states.result` in JSONata) and returns the new variables.
pub fn assign(
    ql: QueryLanguage,
    template: Option<&Value>,
    scope: &Scope<'_>,
    result: Option<&Value>,
    error_output: Option<&Value>,
    rng: &mut dyn Entropy,
) -> Result<Option<Map<String, Value>>, Failure> {
    let Some(t) = template else { return Ok(None) };
    let v = match ql {
        QueryLanguage::JsonPath => {
            let base = error_output.or(result).unwrap_or(scope.input);
            payload::evaluate(t, scope.roots(base), rng)?
        }
        QueryLanguage::Jsonata => scope.jsonata("Assign", t, result, error_output)?,
    };
    match v {
        Value::Object(m) => Ok(Some(m)),
        _ => Err(Failure::runtime("Assign must produce an object")),
    }
}
