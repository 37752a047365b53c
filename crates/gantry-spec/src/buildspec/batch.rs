//! The `batch` block (FORMATS-AWS.md §1.5): exactly one of build-list,
//! build-graph, build-matrix or build-fanout, with the graph checked for
//! unknown dependencies and cycles.

use super::model::{
    Batch, BatchEnv, BatchKind, BatchTask, BuildFanout, BuildMatrix, MatrixVariable,
};
use super::read::{self, Cx, Field, Fields, fields, join, user_map};
use std::collections::HashMap;

use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node, shorten};

const KINDS: &[&str] = &["build-list", "build-graph", "build-matrix", "build-fanout"];
const BATCH_KEYS: &[&str] = &[
    "fast-fail",
    "build-list",
    "build-graph",
    "build-matrix",
    "build-fanout",
];
const TASK_KEYS: &[&str] = &[
    "identifier",
    "buildspec",
    "debug-session",
    "env",
    "ignore-failure",
];
const GRAPH_TASK_KEYS: &[&str] = &[
    "identifier",
    "buildspec",
    "debug-session",
    "env",
    "ignore-failure",
    "depend-on",
];
/// Cycles reported per graph, and task names shown per cycle.
const MAX_CYCLE_REPORTS: usize = 10;
const MAX_CYCLE_SHOWN: usize = 12;
const ENV_KEYS: &[&str] = &[
    "compute-type",
    "image",
    "privileged-mode",
    "type",
    "variables",
];

/// Reads `batch`.
pub(super) fn batch(cx: &mut Cx, field: Field<'_>) -> Option<Batch> {
    let block = fields(cx, field.value, field.key.span, "batch", BATCH_KEYS)?;
    let fast_fail = read::flag(cx, &block, "fast-fail");
    let present: Vec<(&str, Field<'_>)> = block
        .names()
        .filter(|(name, _)| KINDS.contains(name))
        .collect();
    let (kind_name, kind_field) = match present.as_slice() {
        [one] => *one,
        [] => {
            cx.error(
                field.key.span,
                "`batch` must contain exactly one of `build-list`, `build-graph`, `build-matrix`, `build-fanout`",
            );
            return None;
        }
        [(first, _), rest @ ..] => {
            for (name, extra) in rest {
                cx.error(
                    extra.key.span,
                    format!("`batch` can have only one kind; `{name}` given as well as `{first}`"),
                );
            }
            return None;
        }
    };
    let path = join("batch", kind_name);
    let kind = match kind_name {
        "build-list" => BatchKind::List(tasks(cx, kind_field.value, &path, false)),
        "build-graph" => {
            let tasks = tasks(cx, kind_field.value, &path, true);
            check_graph(cx, &tasks, &path);
            BatchKind::Graph(tasks)
        }
        "build-matrix" => BatchKind::Matrix(matrix(cx, kind_field)?),
        _ => BatchKind::Fanout(fanout(cx, kind_field)?),
    };
    Some(Batch { fast_fail, kind })
}

fn tasks(cx: &mut Cx, node: &Node, path: &str, graph: bool) -> Vec<BatchTask> {
    let Kind::Seq(items) = &node.kind else {
        cx.expected(node, path, "a list of tasks");
        return Vec::new();
    };
    let allowed = if graph { GRAPH_TASK_KEYS } else { TASK_KEYS };
    let mut out: Vec<BatchTask> = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let task_path = format!("{path}[{i}]");
        let Some(block) = fields(cx, item, item.span, &task_path, allowed) else {
            continue;
        };
        let Some(identifier) = block
            .require(cx, "identifier")
            .and_then(|f| identifier(cx, f.value, &join(&task_path, "identifier")))
        else {
            continue;
        };
        if let Some(first) = seen.get(&identifier.value) {
            cx.error(
                identifier.span,
                format!(
                    "`{task_path}.identifier`: `{}` is already used on line {}",
                    identifier.value, first.line
                ),
            );
            continue;
        }
        seen.insert(identifier.value.clone(), identifier.span);
        out.push(BatchTask {
            span: item.span,
            identifier,
            buildspec: read::opt_text(cx, &block, "buildspec", "a buildspec path"),
            debug_session: read::flag(cx, &block, "debug-session"),
            env: block
                .get("env")
                .map(|f| batch_env(cx, f, &join(&task_path, "env")))
                .unwrap_or_default(),
            ignore_failure: read::flag(cx, &block, "ignore-failure"),
            depend_on: read::opt_list(cx, &block, "depend-on", "task identifier"),
        });
    }
    out
}

/// Identifiers name builds and environment values; CodeBuild allows letters,
/// digits and `_`.
fn identifier(cx: &mut Cx, node: &Node, path: &str) -> Option<Spanned<String>> {
    let id = read::text(cx, node, path, "an identifier")?;
    let valid = !id.value.is_empty()
        && id.value.len() <= 128
        && id
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        cx.error(
            id.span,
            format!(
                "`{path}` must use only letters, digits and `_` (at most 128), found `{}`",
                shorten(&id.value)
            ),
        );
        return None;
    }
    Some(id)
}

fn batch_env(cx: &mut Cx, field: Field<'_>, path: &str) -> BatchEnv {
    let Some(block) = fields(cx, field.value, field.key.span, path, ENV_KEYS) else {
        return BatchEnv::default();
    };
    BatchEnv {
        compute_type: read::opt_text(cx, &block, "compute-type", "a compute type"),
        image: read::opt_text(cx, &block, "image", "an image"),
        privileged_mode: read::flag(cx, &block, "privileged-mode"),
        env_type: read::opt_text(cx, &block, "type", "an environment type"),
        variables: block
            .get("variables")
            .map(|f| super::env::variables(cx, f.value, &join(path, "variables")))
            .unwrap_or_default(),
    }
}

/// Every `depend-on` names a task, and the graph has no cycle (else the
/// batch could never finish).
fn check_graph(cx: &mut Cx, tasks: &[BatchTask], path: &str) {
    let ids: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.identifier.value.as_str(), i))
        .collect();
    let index = |id: &str| ids.get(id).copied();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, task) in tasks.iter().enumerate() {
        for dep in &task.depend_on {
            match index(&dep.value) {
                Some(j) => edges[i].push(j),
                None => cx.error(
                    dep.span,
                    format!(
                        "`{path}[{i}].depend-on`: no task has the identifier `{}`{}",
                        shorten(&dep.value),
                        suggest(&dep.value, tasks)
                    ),
                ),
            }
        }
    }
    // Iterative depth-first search (a recursive one could overflow the stack
    // on a long chain): 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; tasks.len()];
    let mut reported = 0;
    for root in 0..tasks.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            let child = edges[node].get(top.1).copied();
            top.1 += 1;
            match child {
                Some(child) if state[child] == 0 => {
                    state[child] = 1;
                    stack.push((child, 0));
                }
                Some(child) if state[child] == 1 => {
                    // A hostile graph can hold thousands of cycles; a few
                    // say enough.
                    if reported < MAX_CYCLE_REPORTS {
                        report_cycle(cx, tasks, &stack, child, path);
                    }
                    reported += 1;
                    // Only one report per cycle: treat the edge as done.
                }
                Some(_) => {}
                None => {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
}

fn report_cycle(
    cx: &mut Cx,
    tasks: &[BatchTask],
    stack: &[(usize, usize)],
    back_to: usize,
    path: &str,
) {
    let start = stack.iter().position(|(n, _)| *n == back_to).unwrap_or(0);
    let mut cycle: Vec<&str> = stack
        .get(start..)
        .unwrap_or_default()
        .iter()
        .filter_map(|(n, _)| tasks.get(*n).map(|t| t.identifier.value.as_str()))
        .chain(tasks.get(back_to).map(|t| t.identifier.value.as_str()))
        .collect();
    let Some(&(last, _)) = stack.last() else {
        return;
    };
    let span = tasks
        .get(last)
        .and_then(|t| {
            t.depend_on
                .iter()
                .find(|d| Some(d.value.as_str()) == cycle.last().copied())
        })
        .map(|d| d.span)
        .unwrap_or(Span::default());
    if cycle.len() > MAX_CYCLE_SHOWN {
        let tail = cycle.split_off(cycle.len() - MAX_CYCLE_SHOWN / 2);
        cycle.truncate(MAX_CYCLE_SHOWN / 2);
        cycle.push("...");
        cycle.extend(tail);
    }
    cx.error(
        span,
        format!("`{path}`: dependency cycle {}", cycle.join(" -> ")),
    );
}

fn suggest(name: &str, tasks: &[BatchTask]) -> String {
    let ids: Vec<&str> = tasks.iter().map(|t| t.identifier.value.as_str()).collect();
    read::did_you_mean(name, &ids)
        .map(|g| format!("; did you mean `{g}`?"))
        .unwrap_or_default()
}

fn matrix(cx: &mut Cx, field: Field<'_>) -> Option<BuildMatrix> {
    let path = "batch.build-matrix";
    let block = fields(
        cx,
        field.value,
        field.key.span,
        path,
        &["static", "dynamic"],
    )?;
    let mut matrix = BuildMatrix {
        ignore_failure: false,
        static_env: BatchEnv::default(),
        buildspecs: Vec::new(),
        compute_types: Vec::new(),
        images: Vec::new(),
        variables: Vec::new(),
    };
    if let Some(f) = block.get("static") {
        let spath = join(path, "static");
        if let Some(st) = fields(cx, f.value, f.key.span, &spath, &["ignore-failure", "env"]) {
            matrix.ignore_failure = read::flag(cx, &st, "ignore-failure");
            if let Some(env) = st.get("env") {
                matrix.static_env = batch_env(cx, env, &join(&spath, "env"));
            }
        }
    }
    if let Some(f) = block.get("dynamic") {
        dynamic(cx, f, &join(path, "dynamic"), &mut matrix);
    }
    Some(matrix)
}

fn dynamic(cx: &mut Cx, field: Field<'_>, path: &str, matrix: &mut BuildMatrix) {
    let Some(block) = fields(cx, field.value, field.key.span, path, &["buildspec", "env"]) else {
        return;
    };
    matrix.buildspecs = read::opt_list(cx, &block, "buildspec", "buildspec path");
    let Some(env) = block.get("env") else {
        return;
    };
    let epath = join(path, "env");
    let keys = &["compute-type", "image", "variables"];
    let Some(env): Option<Fields<'_>> = fields(cx, env.value, env.key.span, &epath, keys) else {
        return;
    };
    matrix.compute_types = read::opt_list(cx, &env, "compute-type", "compute type");
    matrix.images = read::opt_list(cx, &env, "image", "image");
    if let Some(vars) = env.get("variables") {
        let vpath = join(&epath, "variables");
        for (name, values) in user_map(cx, vars.value, &vpath) {
            let values = read::list(cx, values, &join(&vpath, &name.value), "value");
            matrix.variables.push(MatrixVariable { name, values });
        }
    }
}

fn fanout(cx: &mut Cx, field: Field<'_>) -> Option<BuildFanout> {
    let path = "batch.build-fanout";
    let keys = &["parallelism", "ignore-failure"];
    let block = fields(cx, field.value, field.key.span, path, keys)?;
    let ignore_failure = read::flag(cx, &block, "ignore-failure");
    let f = block.require(cx, "parallelism")?;
    let text = read::text(
        cx,
        f.value,
        "batch.build-fanout.parallelism",
        "a whole number above 0",
    )?;
    match text.value.parse::<u32>() {
        Ok(n) if n > 0 => Some(BuildFanout {
            parallelism: Spanned::new(n, text.span),
            ignore_failure,
        }),
        _ => {
            cx.expected(
                f.value,
                "batch.build-fanout.parallelism",
                "a whole number above 0",
            );
            None
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
