//! The node tree to the typed model, member by member, with botocore's
//! per-member constraints. Rules that relate members to each other (unique
//! names, artifact flow, variable references) are in `rules`.

use super::model::*;
use super::read::{self, ENV_NAME, NAME, Reader, Text, join};
use crate::buildspec::read::{Field, Fields};
use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node};

const DECLARATION_KEYS: &[&str] = &[
    "name",
    "roleArn",
    "artifactStore",
    "artifactStores",
    "stages",
    "version",
    "executionMode",
    "pipelineType",
    "variables",
    "triggers",
];
const STAGE_KEYS: &[&str] = &[
    "name",
    "blockers",
    "actions",
    "onFailure",
    "onSuccess",
    "beforeEntry",
];
const ACTION_KEYS: &[&str] = &[
    "name",
    "actionTypeId",
    "runOrder",
    "configuration",
    "commands",
    "outputArtifacts",
    "inputArtifacts",
    "outputVariables",
    "roleArn",
    "region",
    "namespace",
    "timeoutInMinutes",
    "environmentVariables",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "ruleTypeId",
    "configuration",
    "commands",
    "inputArtifacts",
    "roleArn",
    "region",
    "timeoutInMinutes",
];

/// Stages in a pipeline, and actions in a stage: CodePipeline's quotas.
pub(crate) const MAX_STAGES: usize = 50;
/// See [`MAX_STAGES`].
pub(crate) const MAX_ACTIONS: usize = 50;

/// Where the declaration sits: `pipeline.` in the `get-pipeline` shape.
pub(crate) struct Root<'n> {
    pub declaration: &'n Node,
    pub at: Span,
    pub prefix: &'static str,
    pub metadata: Option<Field<'n>>,
    pub tags: Option<Field<'n>>,
}

/// Finds the declaration in either accepted shape.
pub(crate) fn root<'n>(r: &mut Reader, node: &'n Node) -> Option<Root<'n>> {
    let Kind::Map(entries) = &node.kind else {
        let found = r.found(node);
        r.error(
            node.span,
            format!(
                "a pipeline file must be {} with `name` and `stages` (or `pipeline` and `metadata`, as `get-pipeline` prints), found {found}",
                if r.json { "an object" } else { "a mapping" }
            ),
        );
        return None;
    };
    let wrapped = entries
        .iter()
        .any(|(k, _)| k.scalar().is_some_and(|s| s.text == "pipeline"));
    if !wrapped {
        return Some(Root {
            declaration: node,
            at: node.span,
            prefix: "",
            metadata: None,
            tags: None,
        });
    }
    let top = r.block(node, node.span, "", &["pipeline", "metadata", "tags"])?;
    let pipeline = top.get("pipeline")?;
    Some(Root {
        declaration: pipeline.value,
        at: pipeline.key.span,
        prefix: "pipeline",
        metadata: top.get("metadata"),
        tags: top.get("tags"),
    })
}

/// Reads the declaration; `None` when a required member is missing or unusable.
pub(crate) fn declaration(r: &mut Reader, root: &Root<'_>) -> Option<PipelineDeclaration> {
    let path = root.prefix;
    let top = r.block(root.declaration, root.at, path, DECLARATION_KEYS)?;
    let at = |k: &str| join(path, k);
    let name = top
        .require(&mut r.cx, "name")
        .and_then(|f| r.string(f.value, &at("name"), NAME));
    let role_arn = top
        .require(&mut r.cx, "roleArn")
        .and_then(|f| r.role_arn(f.value, &at("roleArn")));
    let artifact_store = top
        .get("artifactStore")
        .and_then(|f| artifact_store(r, f.value, f.key.span, &at("artifactStore")));
    let artifact_stores = top
        .get("artifactStores")
        .and_then(|f| artifact_stores(r, f.value, &at("artifactStores")));
    let stages = top
        .require(&mut r.cx, "stages")
        .and_then(|f| stages(r, f.value, &at("stages")));
    let version = top
        .get("version")
        .and_then(|f| r.integer(f.value, &at("version"), 1, i32::MAX as u32));
    let execution_mode = top.get("executionMode").and_then(|f| {
        r.choice(
            f.value,
            &at("executionMode"),
            &[
                ("QUEUED", ExecutionMode::Queued),
                ("SUPERSEDED", ExecutionMode::Superseded),
                ("PARALLEL", ExecutionMode::Parallel),
            ],
        )
    });
    let pipeline_type = top.get("pipelineType").and_then(|f| {
        r.choice(
            f.value,
            &at("pipelineType"),
            &[("V1", PipelineType::V1), ("V2", PipelineType::V2)],
        )
    });
    let variables = top
        .get("variables")
        .and_then(|f| variables(r, f.value, &at("variables")));
    let triggers = top
        .get("triggers")
        .and_then(|f| triggers(r, f.value, &at("triggers")));
    Some(PipelineDeclaration {
        span: root.declaration.span,
        name: name?,
        role_arn: role_arn?,
        artifact_store,
        artifact_stores,
        stages: stages?,
        version,
        execution_mode,
        pipeline_type,
        variables,
        triggers,
    })
}

fn artifact_store(r: &mut Reader, node: &Node, at: Span, path: &str) -> Option<ArtifactStore> {
    let block = r.block(node, at, path, &["type", "location", "encryptionKey"])?;
    let store_type = block.require(&mut r.cx, "type").and_then(|f| {
        r.choice(
            f.value,
            &join(path, "type"),
            &[("S3", ArtifactStoreType::S3)],
        )
    });
    let location = block
        .require(&mut r.cx, "location")
        .and_then(|f| r.string(f.value, &join(path, "location"), read::BUCKET));
    let encryption_key = block.get("encryptionKey").and_then(|f| {
        let path = join(path, "encryptionKey");
        let key = r.block(f.value, f.key.span, &path, &["id", "type"])?;
        let id = key
            .require(&mut r.cx, "id")
            .and_then(|f| r.string(f.value, &join(&path, "id"), Text::len(1, 400)));
        let key_type = key.require(&mut r.cx, "type").and_then(|f| {
            r.choice(
                f.value,
                &join(&path, "type"),
                &[("KMS", EncryptionKeyType::Kms)],
            )
        });
        Some(EncryptionKey {
            id: id?,
            key_type: key_type?,
        })
    });
    Some(ArtifactStore {
        span: node.span,
        store_type: store_type?,
        location: location?,
        encryption_key,
    })
}

fn artifact_stores(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<RegionalArtifactStore>> {
    let entries = r.map(node, path)?;
    let mut out = Vec::new();
    for (region, value) in entries {
        r.check(&region, &format!("{path} key"), read::REGION);
        let store_path = format!("{path}.{}", region.value);
        if let Some(store) = artifact_store(r, value, region.span, &store_path) {
            out.push(RegionalArtifactStore { region, store });
        }
    }
    Some(out)
}

fn stages(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<StageDeclaration>> {
    let items = r.list(node, path, 0, MAX_STAGES)?;
    if items.len() < 2 {
        r.error(
            node.span,
            format!(
                "a pipeline needs at least 2 stages (a source stage and one more), found {} in `{path}`",
                items.len()
            ),
        );
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match stage(r, item, &format!("{path}[{i}]")) {
            Some(stage) => out.push(stage),
            None => r.incomplete = true,
        }
    }
    Some(out)
}

fn stage(r: &mut Reader, node: &Node, path: &str) -> Option<StageDeclaration> {
    let block = r.block(node, node.span, path, STAGE_KEYS)?;
    let name = block
        .require(&mut r.cx, "name")
        .and_then(|f| r.string(f.value, &join(path, "name"), NAME));
    let blockers = block
        .get("blockers")
        .and_then(|f| blockers(r, f.value, &join(path, "blockers")));
    let actions = block.require(&mut r.cx, "actions").and_then(|f| {
        let path = join(path, "actions");
        let items = r.list(f.value, &path, 1, MAX_ACTIONS)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match action(r, item, &format!("{path}[{i}]")) {
                Some(action) => out.push(action),
                None => r.incomplete = true,
            }
        }
        Some(out)
    });
    let on_failure = block
        .get("onFailure")
        .and_then(|f| failure_conditions(r, f, &join(path, "onFailure")));
    let on_success = block.get("onSuccess").and_then(|f| {
        let path = join(path, "onSuccess");
        let b = r.block(f.value, f.key.span, &path, &["conditions"])?;
        let conditions = b
            .require(&mut r.cx, "conditions")
            .and_then(|f| conditions(r, f.value, &join(&path, "conditions")))?;
        Some(SuccessConditions { conditions })
    });
    let before_entry = block.get("beforeEntry").and_then(|f| {
        let path = join(path, "beforeEntry");
        let b = r.block(f.value, f.key.span, &path, &["conditions"])?;
        let conditions = b
            .require(&mut r.cx, "conditions")
            .and_then(|f| conditions(r, f.value, &join(&path, "conditions")))?;
        Some(BeforeEntryConditions { conditions })
    });
    Some(StageDeclaration {
        span: node.span,
        name: name?,
        blockers,
        actions: actions?,
        on_failure,
        on_success,
        before_entry,
    })
}

fn blockers(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<BlockerDeclaration>> {
    let items = r.list(node, path, 0, usize::MAX)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["name", "type"]) else {
            continue;
        };
        let name = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &join(&path, "name"), Text::len(1, 100)));
        let blocker_type = b.require(&mut r.cx, "type").and_then(|f| {
            r.choice(
                f.value,
                &join(&path, "type"),
                &[("Schedule", BlockerType::Schedule)],
            )
        });
        if let (Some(name), Some(blocker_type)) = (name, blocker_type) {
            out.push(BlockerDeclaration { name, blocker_type });
        }
    }
    Some(out)
}

fn action(r: &mut Reader, node: &Node, path: &str) -> Option<ActionDeclaration> {
    if let Kind::Map(entries) = &node.kind {
        let unknown = entries.iter().any(|(k, _)| {
            k.scalar()
                .is_some_and(|s| !ACTION_KEYS.contains(&s.text.as_str()))
        });
        if unknown {
            r.misspelt.push(node.span);
        }
    }
    let block = r.block(node, node.span, path, ACTION_KEYS)?;
    let at = |k: &str| join(path, k);
    let name = block
        .require(&mut r.cx, "name")
        .and_then(|f| r.string(f.value, &at("name"), NAME));
    let action_type_id = block
        .require(&mut r.cx, "actionTypeId")
        .and_then(|f| action_type_id(r, f, &at("actionTypeId")));
    let run_order = block
        .get("runOrder")
        .and_then(|f| r.integer(f.value, &at("runOrder"), 1, 999));
    let configuration = block
        .get("configuration")
        .and_then(|f| configuration(r, f.value, &at("configuration"), (0, usize::MAX), 1000));
    let commands = opt_strings(r, &block, path, "commands", (1, 50), Text::len(1, 1000));
    let output_artifacts = block
        .get("outputArtifacts")
        .and_then(|f| output_artifacts(r, f.value, &at("outputArtifacts")));
    let input_artifacts = block
        .get("inputArtifacts")
        .and_then(|f| input_artifacts(r, f.value, &at("inputArtifacts")));
    let output_variables = opt_strings(
        r,
        &block,
        path,
        "outputVariables",
        (1, 15),
        Text::len(1, 128),
    );
    let role_arn = block
        .get("roleArn")
        .and_then(|f| r.role_arn(f.value, &at("roleArn")));
    let region = block
        .get("region")
        .and_then(|f| r.string(f.value, &at("region"), read::REGION));
    let namespace = block
        .get("namespace")
        .and_then(|f| r.string(f.value, &at("namespace"), read::NAMESPACE));
    let timeout_in_minutes = block
        .get("timeoutInMinutes")
        .and_then(|f| r.integer(f.value, &at("timeoutInMinutes"), 5, 86_400));
    let environment_variables = block
        .get("environmentVariables")
        .and_then(|f| environment_variables(r, f.value, &at("environmentVariables")));
    Some(ActionDeclaration {
        span: node.span,
        name: name?,
        action_type_id: action_type_id?,
        run_order,
        configuration,
        commands,
        output_artifacts,
        input_artifacts,
        output_variables,
        role_arn,
        region,
        namespace,
        timeout_in_minutes,
        environment_variables,
    })
}

fn action_type_id(r: &mut Reader, field: Field<'_>, path: &str) -> Option<ActionTypeId> {
    let b = r.block(
        field.value,
        field.key.span,
        path,
        &["category", "owner", "provider", "version"],
    )?;
    let category = b.require(&mut r.cx, "category").and_then(|f| {
        r.choice(
            f.value,
            &join(path, "category"),
            &[
                ("Source", ActionCategory::Source),
                ("Build", ActionCategory::Build),
                ("Deploy", ActionCategory::Deploy),
                ("Test", ActionCategory::Test),
                ("Invoke", ActionCategory::Invoke),
                ("Approval", ActionCategory::Approval),
                ("Compute", ActionCategory::Compute),
            ],
        )
    });
    let owner = b.require(&mut r.cx, "owner").and_then(|f| {
        r.choice(
            f.value,
            &join(path, "owner"),
            &[
                ("AWS", ActionOwner::Aws),
                ("ThirdParty", ActionOwner::ThirdParty),
                ("Custom", ActionOwner::Custom),
            ],
        )
    });
    let provider = b
        .require(&mut r.cx, "provider")
        .and_then(|f| r.string(f.value, &join(path, "provider"), read::PROVIDER));
    let version = b
        .require(&mut r.cx, "version")
        .and_then(|f| r.string(f.value, &join(path, "version"), read::VERSION));
    Some(ActionTypeId {
        span: field.value.span,
        category: category?,
        owner: owner?,
        provider: provider?,
        version: version?,
    })
}

/// A string→string map: `(min, max)` entries, values up to `max_value` characters.
fn configuration(
    r: &mut Reader,
    node: &Node,
    path: &str,
    (min, max): (usize, usize),
    max_value: usize,
) -> Option<Configuration> {
    let entries = r.map(node, path)?;
    if entries.len() < min || entries.len() > max {
        r.error(
            node.span,
            format!(
                "`{path}` must have {min} to {max} entries, found {}",
                entries.len()
            ),
        );
    }
    let mut out = Vec::new();
    for (key, value) in entries {
        let key_path = format!("{path}.{}", key.value);
        r.check(
            &key,
            &format!("{path} key `{}`", key.value),
            Text::len(1, 50),
        );
        match r.string(value, &key_path, Text::len(1, max_value)) {
            Some(value) => out.push(ConfigurationEntry { key, value }),
            None => r.unusable.push((node.span, key.value)),
        }
    }
    Some(Configuration {
        span: node.span,
        entries: out,
    })
}

fn opt_strings(
    r: &mut Reader,
    block: &Fields<'_>,
    path: &str,
    name: &str,
    bounds: (usize, usize),
    rule: Text,
) -> Option<Vec<Spanned<String>>> {
    let field = block.get(name)?;
    r.strings(field.value, &join(path, name), bounds, rule)
}

fn output_artifacts(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<OutputArtifact>> {
    let items = r.list(node, path, 0, usize::MAX)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["name", "files"]) else {
            r.incomplete = true;
            continue;
        };
        let name = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &join(&path, "name"), read::ARTIFACT));
        let files = opt_strings(r, &b, &path, "files", (1, 10), Text::len(1, 128));
        match name {
            Some(name) => out.push(OutputArtifact { name, files }),
            None => r.incomplete = true,
        }
    }
    Some(out)
}

fn input_artifacts(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<InputArtifact>> {
    let items = r.list(node, path, 0, usize::MAX)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["name"]) else {
            continue;
        };
        if let Some(name) = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &join(&path, "name"), read::ARTIFACT))
        {
            out.push(InputArtifact { name });
        }
    }
    Some(out)
}

fn environment_variables(
    r: &mut Reader,
    node: &Node,
    path: &str,
) -> Option<Vec<EnvironmentVariable>> {
    let items = r.list(node, path, 1, 10)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["name", "value", "type"]) else {
            continue;
        };
        let name = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &join(&path, "name"), ENV_NAME));
        let value = b
            .require(&mut r.cx, "value")
            .and_then(|f| r.string(f.value, &join(&path, "value"), Text::len(1, 2000)));
        let variable_type = b.get("type").and_then(|f| {
            r.choice(
                f.value,
                &join(&path, "type"),
                &[
                    ("PLAINTEXT", EnvironmentVariableType::Plaintext),
                    ("SECRETS_MANAGER", EnvironmentVariableType::SecretsManager),
                ],
            )
        });
        if let (Some(name), Some(value)) = (name, value) {
            out.push(EnvironmentVariable {
                name,
                value,
                variable_type,
            });
        }
    }
    Some(out)
}

const RESULTS: &[(&str, ConditionResult)] = &[
    ("ROLLBACK", ConditionResult::Rollback),
    ("FAIL", ConditionResult::Fail),
    ("RETRY", ConditionResult::Retry),
    ("SKIP", ConditionResult::Skip),
];

fn failure_conditions(r: &mut Reader, field: Field<'_>, path: &str) -> Option<FailureConditions> {
    let b = r.block(
        field.value,
        field.key.span,
        path,
        &["result", "retryConfiguration", "conditions"],
    )?;
    let result = b
        .get("result")
        .and_then(|f| r.choice(f.value, &join(path, "result"), RESULTS));
    let retry_configuration = b.get("retryConfiguration").and_then(|f| {
        let path = join(path, "retryConfiguration");
        let rc = r.block(f.value, f.key.span, &path, &["retryMode"])?;
        let retry_mode = rc.get("retryMode").and_then(|f| {
            r.choice(
                f.value,
                &join(&path, "retryMode"),
                &[
                    ("FAILED_ACTIONS", StageRetryMode::FailedActions),
                    ("ALL_ACTIONS", StageRetryMode::AllActions),
                ],
            )
        });
        Some(RetryConfiguration { retry_mode })
    });
    let conditions = b
        .get("conditions")
        .and_then(|f| conditions(r, f.value, &join(path, "conditions")));
    Some(FailureConditions {
        span: field.value.span,
        result,
        retry_configuration,
        conditions,
    })
}

fn conditions(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<Condition>> {
    let items = r.list(node, path, 1, 1)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["result", "rules"]) else {
            continue;
        };
        let result = b
            .get("result")
            .and_then(|f| r.choice(f.value, &join(&path, "result"), RESULTS));
        let rules = b.get("rules").and_then(|f| {
            let path = join(&path, "rules");
            let items = r.list(f.value, &path, 1, 5)?;
            Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| rule(r, n, &format!("{path}[{i}]")))
                    .collect(),
            )
        });
        out.push(Condition { result, rules });
    }
    Some(out)
}

fn rule(r: &mut Reader, node: &Node, path: &str) -> Option<RuleDeclaration> {
    let b = r.block(node, node.span, path, RULE_KEYS)?;
    let at = |k: &str| join(path, k);
    let name = b
        .require(&mut r.cx, "name")
        .and_then(|f| r.string(f.value, &at("name"), NAME));
    let rule_type_id = b.require(&mut r.cx, "ruleTypeId").and_then(|f| {
        let path = at("ruleTypeId");
        let t = r.block(
            f.value,
            f.key.span,
            &path,
            &["category", "owner", "provider", "version"],
        )?;
        let category = t.require(&mut r.cx, "category").and_then(|f| {
            r.choice(
                f.value,
                &join(&path, "category"),
                &[("Rule", RuleCategory::Rule)],
            )
        });
        let owner = t
            .get("owner")
            .and_then(|f| r.choice(f.value, &join(&path, "owner"), &[("AWS", RuleOwner::Aws)]));
        let provider = t
            .require(&mut r.cx, "provider")
            .and_then(|f| r.string(f.value, &join(&path, "provider"), read::PROVIDER));
        let version = t
            .get("version")
            .and_then(|f| r.string(f.value, &join(&path, "version"), read::VERSION));
        Some(RuleTypeId {
            category: category?,
            owner,
            provider: provider?,
            version,
        })
    });
    let configuration = b
        .get("configuration")
        .and_then(|f| configuration(r, f.value, &at("configuration"), (0, 200), 10_000));
    let commands = opt_strings(r, &b, path, "commands", (1, 50), Text::len(1, 1000));
    let input_artifacts = b
        .get("inputArtifacts")
        .and_then(|f| input_artifacts(r, f.value, &at("inputArtifacts")));
    let role_arn = b
        .get("roleArn")
        .and_then(|f| r.role_arn(f.value, &at("roleArn")));
    let region = b
        .get("region")
        .and_then(|f| r.string(f.value, &at("region"), read::REGION));
    let timeout_in_minutes = b
        .get("timeoutInMinutes")
        .and_then(|f| r.integer(f.value, &at("timeoutInMinutes"), 5, 86_400));
    Some(RuleDeclaration {
        name: name?,
        rule_type_id: rule_type_id?,
        configuration,
        commands,
        input_artifacts,
        role_arn,
        region,
        timeout_in_minutes,
    })
}

fn variables(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<PipelineVariableDeclaration>> {
    let items = r.list(node, path, 0, 50)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(
            item,
            item.span,
            &path,
            &["name", "defaultValue", "description"],
        ) else {
            continue;
        };
        let name = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &join(&path, "name"), read::VARIABLE));
        let default_value = b
            .get("defaultValue")
            .and_then(|f| r.string(f.value, &join(&path, "defaultValue"), Text::len(1, 1000)));
        let description = b
            .get("description")
            .and_then(|f| description(r, f.value, &join(&path, "description")));
        if let Some(name) = name {
            out.push(PipelineVariableDeclaration {
                name,
                default_value,
                description,
            });
        }
    }
    Some(out)
}

/// A description may be empty (min 0), which YAML writes as `description:`.
fn description(r: &mut Reader, node: &Node, path: &str) -> Option<Spanned<String>> {
    if node.is_null() && !r.json {
        return Some(Spanned::new(String::new(), node.span));
    }
    r.string(node, path, Text::len(0, 200))
}

fn triggers(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<PipelineTriggerDeclaration>> {
    let items = r.list(node, path, 0, 50)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(t) = trigger(r, item, &format!("{path}[{i}]")) {
            out.push(t);
        }
    }
    Some(out)
}

fn trigger(r: &mut Reader, node: &Node, path: &str) -> Option<PipelineTriggerDeclaration> {
    let b = r.block(node, node.span, path, &["providerType", "gitConfiguration"])?;
    let provider_type = b.require(&mut r.cx, "providerType").and_then(|f| {
        r.choice(
            f.value,
            &join(path, "providerType"),
            &[(
                "CodeStarSourceConnection",
                TriggerProviderType::CodeStarSourceConnection,
            )],
        )
    });
    let git_configuration = b.require(&mut r.cx, "gitConfiguration").and_then(|f| {
        let path = join(path, "gitConfiguration");
        let g = r.block(
            f.value,
            f.key.span,
            &path,
            &["sourceActionName", "push", "pullRequest"],
        )?;
        let source_action_name = g
            .require(&mut r.cx, "sourceActionName")
            .and_then(|f| r.string(f.value, &join(&path, "sourceActionName"), NAME));
        let push = g.get("push").and_then(|f| {
            let path = join(&path, "push");
            let items = r.list(f.value, &path, 1, 3)?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                let Some(p) = r.block(item, item.span, &path, &["tags", "branches", "filePaths"])
                else {
                    continue;
                };
                out.push(GitPushFilter {
                    span: item.span,
                    tags: criteria(r, &p, &path, "tags"),
                    branches: criteria(r, &p, &path, "branches"),
                    file_paths: criteria(r, &p, &path, "filePaths"),
                });
            }
            Some(out)
        });
        let pull_request = g.get("pullRequest").and_then(|f| {
            let path = join(&path, "pullRequest");
            let items = r.list(f.value, &path, 1, 3)?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                let Some(p) = r.block(item, item.span, &path, &["events", "branches", "filePaths"])
                else {
                    continue;
                };
                let events = p.get("events").and_then(|f| {
                    let path = join(&path, "events");
                    let items = r.list(f.value, &path, 1, 3)?;
                    Some(
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, n)| {
                                r.choice(
                                    n,
                                    &format!("{path}[{i}]"),
                                    &[
                                        ("OPEN", PullRequestEvent::Open),
                                        ("UPDATED", PullRequestEvent::Updated),
                                        ("CLOSED", PullRequestEvent::Closed),
                                    ],
                                )
                            })
                            .collect(),
                    )
                });
                out.push(GitPullRequestFilter {
                    span: item.span,
                    events,
                    branches: criteria(r, &p, &path, "branches"),
                    file_paths: criteria(r, &p, &path, "filePaths"),
                });
            }
            Some(out)
        });
        Some(GitConfiguration {
            source_action_name: source_action_name?,
            push,
            pull_request,
        })
    });
    Some(PipelineTriggerDeclaration {
        span: node.span,
        provider_type: provider_type?,
        git_configuration: git_configuration?,
    })
}

fn criteria(
    r: &mut Reader,
    block: &Fields<'_>,
    path: &str,
    name: &str,
) -> Option<GitFilterCriteria> {
    let field = block.get(name)?;
    let path = join(path, name);
    let b = r.block(
        field.value,
        field.key.span,
        &path,
        &["includes", "excludes"],
    )?;
    Some(GitFilterCriteria {
        span: field.value.span,
        includes: opt_strings(r, &b, &path, "includes", (1, 8), Text::len(1, 255)),
        excludes: opt_strings(r, &b, &path, "excludes", (1, 8), Text::len(1, 255)),
    })
}

/// `metadata`: read for the round trip, checked only for shape.
pub(crate) fn metadata(r: &mut Reader, field: Field<'_>) -> Option<PipelineMetadata> {
    let b = r.block(
        field.value,
        field.key.span,
        "metadata",
        &["pipelineArn", "created", "updated", "pollingDisabledAt"],
    )?;
    let pipeline_arn = b
        .get("pipelineArn")
        .and_then(|f| r.raw_string(f.value, "metadata.pipelineArn"));
    let mut stamp = |name: &str| {
        let f = b.get(name)?;
        let path = join("metadata", name);
        match f.value.scalar() {
            Some(s) if !f.value.is_null() => {
                let value = if s.plain && s.text.parse::<f64>().is_ok() {
                    Timestamp::EpochSeconds(s.text.clone())
                } else if s.plain && r.json {
                    r.expected(f.value, &path, "a timestamp (text or epoch seconds)");
                    return None;
                } else {
                    Timestamp::Text(s.text.clone())
                };
                Some(Spanned::new(value, f.value.span))
            }
            _ => {
                r.expected(f.value, &path, "a timestamp (text or epoch seconds)");
                None
            }
        }
    };
    Some(PipelineMetadata {
        pipeline_arn,
        created: stamp("created"),
        updated: stamp("updated"),
        polling_disabled_at: stamp("pollingDisabledAt"),
    })
}

/// `tags`: `[{key, value}]`, keys unique.
pub(crate) fn tags(r: &mut Reader, field: Field<'_>) -> Option<Vec<Tag>> {
    let items = r.list(field.value, "tags", 0, usize::MAX)?;
    let mut out: Vec<Tag> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("tags[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["key", "value"]) else {
            continue;
        };
        let key = b
            .require(&mut r.cx, "key")
            .and_then(|f| r.string(f.value, &join(&path, "key"), Text::len(1, 128)));
        let value = b.require(&mut r.cx, "value").and_then(|f| {
            if f.value.is_null() && !r.json {
                return Some(Spanned::new(String::new(), f.value.span));
            }
            r.string(f.value, &join(&path, "value"), Text::len(0, 256))
        });
        if let (Some(key), Some(value)) = (key, value) {
            if let Some(first) = out.iter().find(|t| t.key.value == key.value) {
                let line = first.key.span.line;
                r.error(
                    key.span,
                    format!(
                        "duplicate tag key `{}` at `{path}.key` (first on line {line})",
                        key.value
                    ),
                );
            }
            out.push(Tag { key, value });
        }
    }
    Some(out)
}
