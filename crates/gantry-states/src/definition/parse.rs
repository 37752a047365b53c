//! JSON → model, collecting every problem with its JSON location.

use super::model::*;
use super::validate;
use crate::choice::{Op, Operand, Rule};
use crate::error::{DefinitionError, ValidationErrors};
use crate::path::{self, ReferencePath};
use crate::payload;
use crate::retry::{Catcher, Retrier};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Parses and validates a definition. Every problem is reported, each with its location.
pub fn parse_definition(json: &Value) -> Result<StateMachine, ValidationErrors> {
    let mut p = Parser { errors: Vec::new() };
    let Some(obj) = json.as_object() else {
        return Err(ValidationErrors(vec![DefinitionError {
            location: String::new(),
            message: "the definition must be a JSON object".into(),
        }]));
    };
    let sm = p.machine(obj, "", true, QueryLanguage::JsonPath);
    if p.errors.is_empty() {
        validate::graph(&sm, "", &mut p.errors);
    }
    if p.errors.is_empty() {
        Ok(sm)
    } else {
        Err(ValidationErrors(p.errors))
    }
}

struct Parser {
    errors: Vec<DefinitionError>,
}

fn join(loc: &str, key: &str) -> String {
    if loc.is_empty() {
        key.to_string()
    } else {
        format!("{loc}.{key}")
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];
const FLOW: &[&str] = &["Next", "End"];
const IO: &[&str] = &["InputPath", "OutputPath"];
const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items"];
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "ItemsPath",
    // `ItemSelector` is not here: JSONata Map states use it too (with `{% %}` values).
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
];

fn allowed(ty: &str) -> Option<Vec<&'static str>> {
    let mut v: Vec<&'static str> = COMMON.to_vec();
    let extra: &[&[&str]] = match ty {
        "Task" => &[
            FLOW,
            IO,
            &[
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "Retry",
                "Catch",
                "Resource",
                "TimeoutSeconds",
                "TimeoutSecondsPath",
                "HeartbeatSeconds",
                "HeartbeatSecondsPath",
                "Credentials",
                "Arguments",
                "Output",
                "Assign",
            ],
        ],
        "Pass" => &[
            FLOW,
            IO,
            &["Parameters", "ResultPath", "Result", "Output", "Assign"],
        ],
        "Choice" => &[IO, &["Choices", "Default", "Output", "Assign"]],
        "Wait" => &[
            FLOW,
            IO,
            &[
                "Seconds",
                "SecondsPath",
                "Timestamp",
                "TimestampPath",
                "Output",
                "Assign",
            ],
        ],
        "Succeed" => &[IO, &["Output"]],
        "Fail" => &[&["Error", "Cause", "ErrorPath", "CausePath"]],
        "Parallel" => &[
            FLOW,
            IO,
            &[
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "Retry",
                "Catch",
                "Branches",
                "Arguments",
                "Output",
                "Assign",
            ],
        ],
        "Map" => &[
            FLOW,
            IO,
            &[
                "Parameters",
                "ResultSelector",
                "ResultPath",
                "Retry",
                "Catch",
                "ItemsPath",
                "Items",
                "ItemSelector",
                "ItemProcessor",
                "Iterator",
                "MaxConcurrency",
                "MaxConcurrencyPath",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
                "ToleratedFailurePercentage",
                "ToleratedFailureCount",
                "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath",
                "Label",
                "Arguments",
                "Output",
                "Assign",
            ],
        ],
        _ => return None,
    };
    for e in extra {
        v.extend_from_slice(e);
    }
    Some(v)
}

fn is_jsonata_expr(v: &Value) -> Option<&str> {
    let s = v.as_str()?.trim();
    s.strip_prefix("{%")?.strip_suffix("%}").map(str::trim)
}

/// Fields whose value holds states of their own (checked one by one).
const NESTED_STATES: &[&str] = &["Branches", "ItemProcessor", "Iterator"];

impl Parser {
    /// Reports each `{% %}` expression in `v` that JSONata cannot parse.
    fn check_jsonata(&mut self, v: &Value, loc: &str) {
        match v {
            Value::String(_) => {
                if let Some(expr) = is_jsonata_expr(v)
                    && let Err(e) = gantry_jsonata::Expression::parse(expr)
                {
                    self.err(loc, format!("invalid JSONata expression: {e}"));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_jsonata(item, &format!("{loc}[{i}]"));
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.check_jsonata(item, &join(loc, k));
                }
            }
            _ => {}
        }
    }

    fn err(&mut self, loc: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(DefinitionError {
            location: loc.into(),
            message: msg.into(),
        });
    }

    fn string(&mut self, obj: &Map<String, Value>, key: &str, loc: &str) -> Option<String> {
        match obj.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.err(join(loc, key), "must be a string");
                None
            }
        }
    }

    fn uint(&mut self, obj: &Map<String, Value>, key: &str, loc: &str, min: u64) -> Option<u64> {
        let v = obj.get(key)?;
        match v.as_u64() {
            Some(n) if n >= min && n <= 99_999_999 => Some(n),
            _ => {
                self.err(
                    join(loc, key),
                    format!("must be an integer between {min} and 99999999"),
                );
                None
            }
        }
    }

    /// A nullable path field: absent → `$`, `null` → `None`.
    fn path_field(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        loc: &str,
        reference: bool,
    ) -> Option<String> {
        match obj.get(key) {
            None => Some("$".into()),
            Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let ok = if reference {
                    path::is_reference_path(s)
                } else {
                    path::is_valid_path(s)
                };
                if !ok {
                    let kind = if reference {
                        "a valid reference path"
                    } else {
                        "a valid JSONPath"
                    };
                    self.err(join(loc, key), format!("'{s}' is not {kind}"));
                }
                Some(s.clone())
            }
            Some(_) => {
                self.err(join(loc, key), "must be a string or null");
                Some("$".into())
            }
        }
    }

    fn machine(
        &mut self,
        obj: &Map<String, Value>,
        loc: &str,
        top: bool,
        inherited: QueryLanguage,
    ) -> StateMachine {
        let allowed: &[&str] = if top {
            &[
                "StartAt",
                "States",
                "Comment",
                "TimeoutSeconds",
                "Version",
                "QueryLanguage",
            ]
        } else {
            &["StartAt", "States", "Comment", "ProcessorConfig"]
        };
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.err(join(loc, k), "unknown field");
            }
        }
        let query_language = self.query_language(obj, loc).unwrap_or(inherited);
        let start_at = match self.string(obj, "StartAt", loc) {
            Some(s) => s,
            None => {
                if !obj.contains_key("StartAt") {
                    self.err(join(loc, "StartAt"), "is required");
                }
                String::new()
            }
        };
        let timeout_seconds = if top {
            self.uint(obj, "TimeoutSeconds", loc, 1)
        } else {
            None
        };
        let comment = self.string(obj, "Comment", loc);
        let mut states = BTreeMap::new();
        let states_loc = join(loc, "States");
        match obj.get("States") {
            Some(Value::Object(m)) => {
                if m.is_empty() {
                    self.err(&states_loc, "must contain at least one state");
                }
                for (name, s) in m {
                    let sloc = join(&states_loc, name);
                    if name.is_empty() || name.chars().count() > 80 {
                        self.err(&sloc, "state names must be 1 to 80 characters long");
                    }
                    match s.as_object() {
                        Some(so) => {
                            if let Some(st) = self.state(name, so, &sloc, query_language) {
                                states.insert(name.clone(), st);
                            }
                        }
                        None => self.err(&sloc, "a state must be a JSON object"),
                    }
                }
            }
            Some(_) => self.err(&states_loc, "must be an object"),
            None => self.err(&states_loc, "is required"),
        }
        StateMachine {
            start_at,
            states,
            timeout_seconds,
            comment,
            query_language,
        }
    }

    fn query_language(&mut self, obj: &Map<String, Value>, loc: &str) -> Option<QueryLanguage> {
        match obj.get("QueryLanguage")? {
            Value::String(s) if s == "JSONPath" => Some(QueryLanguage::JsonPath),
            Value::String(s) if s == "JSONata" => Some(QueryLanguage::Jsonata),
            _ => {
                self.err(
                    join(loc, "QueryLanguage"),
                    "must be \"JSONPath\" or \"JSONata\"",
                );
                None
            }
        }
    }

    fn template(&mut self, obj: &Map<String, Value>, key: &str, loc: &str) -> Option<Value> {
        let v = obj.get(key)?;
        let mut problems = Vec::new();
        payload::check(v, &join(loc, key), &mut problems);
        for (l, m) in problems {
            self.err(l, m);
        }
        Some(v.clone())
    }

    fn state(
        &mut self,
        name: &str,
        obj: &Map<String, Value>,
        loc: &str,
        inherited: QueryLanguage,
    ) -> Option<State> {
        let ty = match obj.get("Type") {
            Some(Value::String(t)) => t.clone(),
            Some(_) => {
                self.err(join(loc, "Type"), "must be a string");
                return None;
            }
            None => {
                self.err(join(loc, "Type"), "is required");
                return None;
            }
        };
        let Some(allowed) = allowed(&ty) else {
            self.err(join(loc, "Type"), format!("unknown state type \"{ty}\" (expected Task, Pass, Choice, Wait, Succeed, Fail, Parallel or Map)"));
            return None;
        };
        let ql = self.query_language(obj, loc).unwrap_or(inherited);
        if inherited == QueryLanguage::Jsonata && ql == QueryLanguage::JsonPath {
            self.err(
                join(loc, "QueryLanguage"),
                "a state cannot use JSONPath when the state machine uses JSONata",
            );
        }
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.err(
                    join(loc, k),
                    format!("field is not allowed in a {ty} state"),
                );
            } else if ql == QueryLanguage::Jsonata && JSONPATH_ONLY.contains(&k.as_str()) {
                self.err(join(loc, k), "field is not allowed in a JSONata state");
            } else if ql == QueryLanguage::JsonPath && JSONATA_ONLY.contains(&k.as_str()) {
                self.err(join(loc, k), "field is only allowed in a JSONata state");
            }
        }
        if ql == QueryLanguage::Jsonata {
            // Every `{% %}` of the state must parse, as CreateStateMachine
            // checks; nested state machines are checked as their states are.
            for (k, v) in obj {
                if !NESTED_STATES.contains(&k.as_str()) {
                    self.check_jsonata(v, &join(loc, k));
                }
            }
        }
        // Next / End.
        let next = self.string(obj, "Next", loc);
        let end = match obj.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(join(loc, "End"), "must be a boolean");
                false
            }
        };
        let terminal_type = matches!(ty.as_str(), "Choice" | "Succeed" | "Fail");
        if !terminal_type {
            match (next.is_some(), end) {
                (true, true) => self.err(loc, "a state cannot have both Next and End: true"),
                (false, false) => self.err(loc, "a state needs either Next or End: true"),
                _ => {}
            }
        }
        let input_path = self.path_field(obj, "InputPath", loc, false);
        let output_path = self.path_field(obj, "OutputPath", loc, false);
        let result_path = match obj.get("ResultPath") {
            None => ReferencePath::parse("$"),
            Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let rp = ReferencePath::parse(s);
                if rp.is_none() {
                    self.err(
                        join(loc, "ResultPath"),
                        format!("'{s}' is not a valid reference path"),
                    );
                }
                rp
            }
            Some(_) => {
                self.err(join(loc, "ResultPath"), "must be a string or null");
                None
            }
        };
        let parameters = if ql == QueryLanguage::Jsonata {
            obj.get("Arguments").cloned()
        } else {
            self.template(obj, "Parameters", loc)
        };
        let result_selector = self.template(obj, "ResultSelector", loc);
        let output = obj.get("Output").cloned();
        let assign = self.assign(obj.get("Assign"), &join(loc, "Assign"));
        let retry = self.retriers(obj.get("Retry"), &join(loc, "Retry"));
        let catch = self.catchers(obj.get("Catch"), &join(loc, "Catch"));

        let kind = match ty.as_str() {
            "Task" => {
                let resource = match self.string(obj, "Resource", loc) {
                    Some(r) => r,
                    None => {
                        if !obj.contains_key("Resource") {
                            self.err(join(loc, "Resource"), "is required in a Task state");
                        }
                        String::new()
                    }
                };
                let timeout = self.dyn_uint(obj, "TimeoutSeconds", loc, ql);
                let heartbeat = self.dyn_uint(obj, "HeartbeatSeconds", loc, ql);
                if let (Some(Dynamic::Static(t)), Some(Dynamic::Static(h))) = (&timeout, &heartbeat)
                    && h >= t
                {
                    self.err(
                        join(loc, "HeartbeatSeconds"),
                        "must be smaller than TimeoutSeconds",
                    );
                }
                Kind::Task {
                    resource,
                    timeout,
                    heartbeat,
                    credentials: obj.get("Credentials").cloned(),
                }
            }
            "Pass" => Kind::Pass {
                result: obj.get("Result").cloned(),
            },
            "Choice" => self.choice_state(obj, loc, ql),
            "Wait" => {
                let secs = self.dyn_uint(obj, "Seconds", loc, ql);
                let ts = self.dyn_timestamp(obj, loc, ql);
                match (secs, ts) {
                    (Some(s), None) => Kind::Wait(WaitFor::Seconds(s)),
                    (None, Some(t)) => Kind::Wait(WaitFor::Timestamp(t)),
                    _ => {
                        self.err(loc, "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath");
                        Kind::Wait(WaitFor::Seconds(Dynamic::Static(0)))
                    }
                }
            }
            "Succeed" => Kind::Succeed,
            "Fail" => {
                let error = self.dyn_string(obj, "Error", loc, ql);
                let cause = self.dyn_string(obj, "Cause", loc, ql);
                Kind::Fail { error, cause }
            }
            "Parallel" => {
                let bloc = join(loc, "Branches");
                let mut branches = Vec::new();
                match obj.get("Branches") {
                    Some(Value::Array(bs)) if !bs.is_empty() => {
                        for (i, b) in bs.iter().enumerate() {
                            let l = format!("{bloc}[{i}]");
                            match b.as_object() {
                                Some(bo) => {
                                    branches.push(Arc::new(self.machine(bo, &l, false, ql)))
                                }
                                None => self.err(l, "a branch must be an object"),
                            }
                        }
                    }
                    _ => self.err(&bloc, "is required and must be a non-empty array"),
                }
                Kind::Parallel { branches }
            }
            "Map" => self.map_state(obj, loc, ql, &parameters),
            _ => return None,
        };
        if !matches!(ty.as_str(), "Task" | "Parallel" | "Map")
            && (obj.contains_key("Retry") || obj.contains_key("Catch"))
        {
            // Already reported as not allowed.
        }
        Some(State {
            name: name.to_string(),
            query_language: ql,
            next,
            input_path,
            output_path,
            parameters,
            result_selector,
            result_path,
            output,
            assign,
            retry,
            catch,
            kind,
        })
    }

    fn assign(&mut self, v: Option<&Value>, loc: &str) -> Option<Value> {
        let v = v?;
        match v.as_object() {
            Some(m) => {
                for k in m.keys() {
                    let name = k.strip_suffix(".$").unwrap_or(k);
                    if name.is_empty()
                        || name.chars().count() > 80
                        || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
                        || name.starts_with(|c: char| c.is_ascii_digit())
                    {
                        self.err(join(loc, k), "variable names must be identifiers of at most 80 characters (paths cannot be assigned)");
                    }
                    if name == "states" {
                        self.err(join(loc, k), "$states is reserved");
                    }
                }
                let mut problems = Vec::new();
                payload::check(v, loc, &mut problems);
                for (l, m) in problems {
                    self.err(l, m);
                }
            }
            None => self.err(loc, "must be an object"),
        }
        Some(v.clone())
    }

    fn dyn_uint(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        loc: &str,
        ql: QueryLanguage,
    ) -> Option<Dynamic<u64>> {
        let path_key = format!("{key}Path");
        let stat = obj.get(key);
        let by_path = obj.get(&path_key);
        if stat.is_some() && by_path.is_some() {
            self.err(loc, format!("{key} and {path_key} cannot both be present"));
        }
        if let Some(v) = stat {
            if ql == QueryLanguage::Jsonata
                && let Some(e) = is_jsonata_expr(v)
            {
                return Some(Dynamic::Expr(e.to_string()));
            }
            let min = if key == "Seconds" { 0 } else { 1 };
            return self.uint(obj, key, loc, min).map(Dynamic::Static);
        }
        if let Some(v) = by_path {
            match v.as_str() {
                Some(p) if path::is_reference_path(p) => return Some(Dynamic::Path(p.to_string())),
                _ => self.err(join(loc, &path_key), "must be a valid reference path"),
            }
        }
        None
    }

    fn dyn_string(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        loc: &str,
        ql: QueryLanguage,
    ) -> Option<Dynamic<String>> {
        let path_key = format!("{key}Path");
        if obj.contains_key(key) && obj.contains_key(&path_key) {
            self.err(loc, format!("{key} and {path_key} cannot both be present"));
        }
        if let Some(s) = self.string(obj, key, loc) {
            if ql == QueryLanguage::Jsonata
                && let Some(e) = is_jsonata_expr(&Value::String(s.clone()))
            {
                return Some(Dynamic::Expr(e.to_string()));
            }
            return Some(Dynamic::Static(s));
        }
        if let Some(p) = self.string(obj, &path_key, loc) {
            if !(path::is_valid_path(&p) || crate::intrinsics::is_intrinsic(&p)) {
                self.err(
                    join(loc, &path_key),
                    "must be a valid path or intrinsic function",
                );
            }
            return Some(Dynamic::Path(p));
        }
        None
    }

    fn dyn_timestamp(
        &mut self,
        obj: &Map<String, Value>,
        loc: &str,
        ql: QueryLanguage,
    ) -> Option<Dynamic<String>> {
        let d = self.dyn_string(obj, "Timestamp", loc, ql)?;
        if let Dynamic::Static(s) = &d
            && crate::timestamp::parse_nanos(s).is_none()
        {
            self.err(
                join(loc, "Timestamp"),
                format!("'{s}' is not an RFC 3339 timestamp like 2016-08-18T17:33:00Z"),
            );
        }
        if let Dynamic::Path(p) = &d
            && !path::is_reference_path(p)
        {
            self.err(join(loc, "TimestampPath"), "must be a valid reference path");
        }
        Some(d)
    }

    fn choice_state(&mut self, obj: &Map<String, Value>, loc: &str, ql: QueryLanguage) -> Kind {
        let cloc = join(loc, "Choices");
        let mut choices = Vec::new();
        match obj.get("Choices") {
            Some(Value::Array(rs)) if !rs.is_empty() => {
                for (i, r) in rs.iter().enumerate() {
                    let l = format!("{cloc}[{i}]");
                    let Some(ro) = r.as_object() else {
                        self.err(l, "a choice rule must be an object");
                        continue;
                    };
                    let next = match self.string(ro, "Next", &l) {
                        Some(n) => n,
                        None => {
                            self.err(join(&l, "Next"), "is required in a top-level choice rule");
                            String::new()
                        }
                    };
                    let assign = self.assign(ro.get("Assign"), &join(&l, "Assign"));
                    let output = ro.get("Output").cloned();
                    if let Some(rule) = self.rule(ro, &l, ql, true) {
                        choices.push(super::model::ChoiceBranch {
                            rule,
                            next,
                            assign,
                            output,
                        });
                    }
                }
            }
            _ => self.err(&cloc, "is required and must be a non-empty array"),
        }
        let default = self.string(obj, "Default", loc);
        Kind::Choice { choices, default }
    }

    fn rule(
        &mut self,
        o: &Map<String, Value>,
        loc: &str,
        ql: QueryLanguage,
        top: bool,
    ) -> Option<Rule> {
        let extra: &[&str] = if top {
            &["Next", "Comment", "Assign", "Output"]
        } else {
            &["Comment"]
        };
        if !top && o.contains_key("Next") {
            self.err(join(loc, "Next"), "nested choice rules cannot have Next");
        }
        if ql == QueryLanguage::Jsonata {
            for k in o.keys() {
                if k != "Condition" && !extra.contains(&k.as_str()) {
                    self.err(
                        join(loc, k),
                        "field is not allowed in a JSONata choice rule",
                    );
                }
            }
            return match o.get("Condition").and_then(is_jsonata_expr) {
                Some(e) => Some(Rule::Condition(e.to_string())),
                None => {
                    self.err(
                        join(loc, "Condition"),
                        "is required and must be a {% %} expression",
                    );
                    None
                }
            };
        }
        let ops: Vec<&String> = o
            .keys()
            .filter(|k| !extra.contains(&k.as_str()) && !matches!(k.as_str(), "Variable" | "Next"))
            .collect();
        if ops.len() != 1 {
            self.err(loc, format!("a choice rule needs exactly one operator (And, Or, Not or a comparison), found {}", ops.len()));
            return None;
        }
        let op = ops[0].as_str();
        let v = &o[op];
        let oloc = join(loc, op);
        match op {
            "And" | "Or" => {
                if o.contains_key("Variable") {
                    self.err(join(loc, "Variable"), format!("not allowed with {op}"));
                }
                let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
                    self.err(&oloc, "must be a non-empty array of rules");
                    return None;
                };
                let mut rules = Vec::new();
                for (i, r) in items.iter().enumerate() {
                    let l = format!("{oloc}[{i}]");
                    match r.as_object() {
                        Some(ro) => rules.extend(self.rule(ro, &l, ql, false)),
                        None => self.err(l, "a choice rule must be an object"),
                    }
                }
                Some(if op == "And" {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                })
            }
            "Not" => {
                if o.contains_key("Variable") {
                    self.err(join(loc, "Variable"), "not allowed with Not");
                }
                let Some(ro) = v.as_object() else {
                    self.err(&oloc, "must be a single rule object");
                    return None;
                };
                self.rule(ro, &oloc, ql, false)
                    .map(|r| Rule::Not(Box::new(r)))
            }
            _ => {
                let Some((cmp, is_path)) = Op::from_field(op) else {
                    self.err(&oloc, "unknown choice operator");
                    return None;
                };
                let variable = match o.get("Variable") {
                    Some(Value::String(s)) if path::is_valid_path(s) => s.clone(),
                    Some(_) => {
                        self.err(join(loc, "Variable"), "must be a valid JSONPath");
                        return None;
                    }
                    None => {
                        self.err(
                            join(loc, "Variable"),
                            "is required with a comparison operator",
                        );
                        return None;
                    }
                };
                let operand = if is_path {
                    match v.as_str() {
                        Some(p) if path::is_valid_path(p) => Operand::Path(p.to_string()),
                        _ => {
                            self.err(&oloc, "must be a valid JSONPath");
                            return None;
                        }
                    }
                } else {
                    if !cmp.accepts_literal(v) {
                        self.err(&oloc, format!("has the wrong type of value for {op}"));
                        return None;
                    }
                    Operand::Literal(v.clone())
                };
                Some(Rule::Compare {
                    variable,
                    op: cmp,
                    operand,
                })
            }
        }
    }

    fn error_equals(&mut self, o: &Map<String, Value>, loc: &str) -> Vec<String> {
        let l = join(loc, "ErrorEquals");
        match o.get("ErrorEquals").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => {
                let names: Vec<String> = a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                if names.len() != a.len() {
                    self.err(&l, "must contain only strings");
                }
                if names.iter().any(|n| n == "States.ALL") && names.len() > 1 {
                    self.err(&l, "States.ALL must appear alone");
                }
                names
            }
            _ => {
                self.err(&l, "is required and must be a non-empty array");
                Vec::new()
            }
        }
    }

    fn retriers(&mut self, v: Option<&Value>, loc: &str) -> Vec<Retrier> {
        let Some(v) = v else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.err(loc, "must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let l = format!("{loc}[{i}]");
            let Some(o) = r.as_object() else {
                self.err(l, "a retrier must be an object");
                continue;
            };
            for k in o.keys() {
                if ![
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ]
                .contains(&k.as_str())
                {
                    self.err(join(&l, k), "unknown field in a retrier");
                }
            }
            let error_equals = self.error_equals(o, &l);
            if error_equals.iter().any(|e| e == "States.ALL") && i + 1 != items.len() {
                self.err(
                    join(&l, "ErrorEquals"),
                    "a retrier with States.ALL must be the last one",
                );
            }
            let interval_seconds = self.uint(o, "IntervalSeconds", &l, 1).unwrap_or(1);
            let max_attempts = self.uint(o, "MaxAttempts", &l, 0).unwrap_or(3);
            let backoff_rate = match o.get("BackoffRate") {
                None => 2.0,
                Some(b) => match b.as_f64() {
                    Some(f) if f >= 1.0 => f,
                    _ => {
                        self.err(
                            join(&l, "BackoffRate"),
                            "must be a number greater than or equal to 1.0",
                        );
                        2.0
                    }
                },
            };
            let max_delay_seconds = self.uint(o, "MaxDelaySeconds", &l, 1);
            let full_jitter = match o.get("JitterStrategy") {
                None => false,
                Some(Value::String(s)) if s == "FULL" => true,
                Some(Value::String(s)) if s == "NONE" => false,
                Some(_) => {
                    self.err(join(&l, "JitterStrategy"), "must be FULL or NONE");
                    false
                }
            };
            out.push(Retrier {
                error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                full_jitter,
            });
        }
        out
    }

    fn catchers(&mut self, v: Option<&Value>, loc: &str) -> Vec<Catcher> {
        let Some(v) = v else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.err(loc, "must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let l = format!("{loc}[{i}]");
            let Some(o) = r.as_object() else {
                self.err(l, "a catcher must be an object");
                continue;
            };
            for k in o.keys() {
                if ![
                    "ErrorEquals",
                    "Next",
                    "ResultPath",
                    "Output",
                    "Assign",
                    "Comment",
                ]
                .contains(&k.as_str())
                {
                    self.err(join(&l, k), "unknown field in a catcher");
                }
            }
            let error_equals = self.error_equals(o, &l);
            if error_equals.iter().any(|e| e == "States.ALL") && i + 1 != items.len() {
                self.err(
                    join(&l, "ErrorEquals"),
                    "a catcher with States.ALL must be the last one",
                );
            }
            let next = self.string(o, "Next", &l).unwrap_or_else(|| {
                self.err(join(&l, "Next"), "is required in a catcher");
                String::new()
            });
            let result_path = match o.get("ResultPath") {
                None => ReferencePath::parse("$"),
                Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    let rp = ReferencePath::parse(s);
                    if rp.is_none() {
                        self.err(
                            join(&l, "ResultPath"),
                            format!("'{s}' is not a valid reference path"),
                        );
                    }
                    rp
                }
                Some(_) => {
                    self.err(join(&l, "ResultPath"), "must be a string or null");
                    None
                }
            };
            let assign = self.assign(o.get("Assign"), &join(&l, "Assign"));
            out.push(Catcher {
                error_equals,
                next,
                result_path,
                output: o.get("Output").cloned(),
                assign,
            });
        }
        out
    }

    fn map_state(
        &mut self,
        obj: &Map<String, Value>,
        loc: &str,
        ql: QueryLanguage,
        parameters: &Option<Value>,
    ) -> Kind {
        let (key, proc_v) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
            (Some(p), None) => ("ItemProcessor", Some(p)),
            (None, Some(p)) => ("Iterator", Some(p)),
            (Some(_), Some(_)) => {
                self.err(loc, "ItemProcessor and Iterator cannot both be present");
                ("ItemProcessor", None)
            }
            (None, None) => {
                self.err(join(loc, "ItemProcessor"), "is required in a Map state");
                ("ItemProcessor", None)
            }
        };
        let ploc = join(loc, key);
        let processor = match proc_v.and_then(Value::as_object) {
            Some(po) => {
                if let Some(mode) = po
                    .get("ProcessorConfig")
                    .and_then(|c| c.get("Mode"))
                    .and_then(Value::as_str)
                    && mode != "INLINE"
                    && mode != "DISTRIBUTED"
                {
                    self.err(
                        join(&ploc, "ProcessorConfig.Mode"),
                        "must be INLINE or DISTRIBUTED",
                    );
                }
                self.machine(po, &ploc, false, ql)
            }
            None => {
                if proc_v.is_some() {
                    self.err(&ploc, "must be an object");
                }
                StateMachine {
                    start_at: String::new(),
                    states: BTreeMap::new(),
                    timeout_seconds: None,
                    comment: None,
                    query_language: ql,
                }
            }
        };
        let items_path = self
            .path_field(obj, "ItemsPath", loc, true)
            .unwrap_or_else(|| "$".into());
        let item_selector = match (obj.get("ItemSelector"), parameters) {
            (Some(_), Some(_)) if ql == QueryLanguage::JsonPath => {
                self.err(loc, "ItemSelector and Parameters cannot both be present");
                None
            }
            (Some(_), _) => self.template(obj, "ItemSelector", loc),
            (None, Some(p)) if ql == QueryLanguage::JsonPath => Some(p.clone()),
            _ => None,
        };
        let max_concurrency = match self.dyn_uint(obj, "MaxConcurrency", loc, ql) {
            Some(d) => d,
            None => {
                // MaxConcurrency may be 0, which dyn_uint's minimum of 1 rejects.
                if obj.get("MaxConcurrency").and_then(Value::as_u64) == Some(0) {
                    self.errors
                        .retain(|e| e.location != join(loc, "MaxConcurrency"));
                }
                Dynamic::Static(0)
            }
        };
        let tolerated_failure_count = self.uint(obj, "ToleratedFailureCount", loc, 0);
        let tolerated_failure_percentage = match obj.get("ToleratedFailurePercentage") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(f) if (0.0..=100.0).contains(&f) => Some(f),
                _ => {
                    self.err(
                        join(loc, "ToleratedFailurePercentage"),
                        "must be a number from 0 to 100",
                    );
                    None
                }
            },
        };
        if obj.contains_key("ItemReader")
            || obj.contains_key("ResultWriter")
            || obj.contains_key("ItemBatcher")
        {
            self.err(loc, "ItemReader, ItemBatcher and ResultWriter (distributed Map with S3) are not supported by Gantry");
        }
        Kind::Map(Box::new(MapSpec {
            processor: Arc::new(processor),
            items_path,
            items: obj.get("Items").cloned(),
            item_selector,
            max_concurrency,
            tolerated_failure_count,
            tolerated_failure_percentage,
        }))
    }
}
