//! Custom action types: CreateCustomActionType, ListActionTypes,
//! DeleteCustomActionType, and what pipelines must respect of them
//! (declarations checked against their type, secret properties hidden).

use std::collections::{BTreeMap, BTreeSet};

use gantry_spec::pipeline::{ActionOwner, PipelineDeclaration};
use gantry_store::{CustomActionTypeRecord, Store, StoreError, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{exception, page, required, validation};
use crate::error::ApiError;
use crate::router::AppState;

/// Custom action types a Region may hold (CodePipeline's quota).
const MAX_TYPES: u32 = 50;
/// Configuration properties per type (the model's list maximum).
const MAX_PROPERTIES: usize = 10;
/// What GetPipeline shows instead of a secret value, and what an update
/// sends to keep the stored one.
pub(crate) const MASK: &str = "****";
/// Action types per ListActionTypes page.
const PAGE_SIZE: usize = 100;

const CATEGORIES: [&str; 7] = [
    "Source", "Build", "Deploy", "Test", "Invoke", "Approval", "Compute",
];

/// (minimum, maximum) artifacts.
type Counts = (u32, u32);

/// The AWS-owned types Gantry runs: (category, provider, inputs, outputs),
/// as gantry-spec's provider table accepts them.
const BUILT_IN: [(&str, &str, Counts, Counts); 5] = [
    ("Approval", "Manual", (0, 0), (0, 0)),
    ("Build", "CodeBuild", (1, 5), (0, 5)),
    ("Invoke", "StepFunctions", (0, 1), (0, 1)),
    ("Source", "Git", (0, 0), (1, 1)),
    ("Test", "CodeBuild", (1, 5), (0, 5)),
];

/// `ActionConfigurationProperty`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Property {
    pub name: Option<String>,
    pub required: Option<bool>,
    pub key: Option<bool>,
    pub secret: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Property {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    fn is(flag: Option<bool>) -> bool {
        flag.unwrap_or(false)
    }
}

/// `ArtifactDetails`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArtifactDetails {
    pub minimum_count: Option<i64>,
    pub maximum_count: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateInput {
    category: Option<String>,
    provider: Option<String>,
    version: Option<String>,
    settings: Option<BTreeMap<String, String>>,
    configuration_properties: Option<Vec<Property>>,
    input_artifact_details: Option<ArtifactDetails>,
    output_artifact_details: Option<ArtifactDetails>,
    tags: Option<Vec<Value>>,
}

/// A stored custom type, read back.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomType {
    #[serde(default)]
    pub action_configuration_properties: Vec<Property>,
    pub input_artifact_details: ArtifactDetails,
    pub output_artifact_details: ArtifactDetails,
}

impl CustomType {
    pub fn from_record(r: &CustomActionTypeRecord) -> Result<CustomType, ApiError> {
        serde_json::from_value(r.definition["actionType"].clone()).map_err(ApiError::internal)
    }

    /// The names of the secret properties.
    pub fn secrets(&self) -> BTreeSet<String> {
        self.action_configuration_properties
            .iter()
            .filter(|p| Property::is(p.secret))
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The queryable property's name, if the type has one.
    pub fn queryable(&self) -> Option<&str> {
        self.action_configuration_properties
            .iter()
            .find(|p| Property::is(p.queryable))
            .map(Property::name)
    }
}

fn check_pattern(value: &str, member: &str, max: usize) -> Result<(), ApiError> {
    let ok = (1..=max).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must be 1 to {max} characters of [0-9A-Za-z_-]"
        )))
    }
}

fn check_category(value: &str, member: &str) -> Result<(), ApiError> {
    if CATEGORIES.contains(&value) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            CATEGORIES.join(", ")
        )))
    }
}

fn check_counts(d: Option<ArtifactDetails>, member: &str) -> Result<(u32, u32), ApiError> {
    let d = required(d, member)?;
    let min = required(d.minimum_count, &format!("{member}.minimumCount"))?;
    let max = required(d.maximum_count, &format!("{member}.maximumCount"))?;
    for (v, m) in [(min, "minimumCount"), (max, "maximumCount")] {
        if !(0..=5).contains(&v) {
            return Err(validation(format!(
                "1 validation error detected: Value '{v}' at '{member}.{m}' failed to satisfy constraint: Member must be between 0 and 5"
            )));
        }
    }
    if min > max {
        return Err(validation(format!(
            "{member}.minimumCount ({min}) is greater than maximumCount ({max})"
        )));
    }
    Ok((min as u32, max as u32))
}

/// The property rules of FORMATS-AWS §3.5.
fn check_properties(props: &[Property]) -> Result<(), ApiError> {
    if props.len() > MAX_PROPERTIES {
        return Err(validation(format!(
            "configurationProperties has {} entries; at most {MAX_PROPERTIES} are allowed",
            props.len()
        )));
    }
    let mut names = BTreeSet::new();
    for (i, p) in props.iter().enumerate() {
        let at = format!("configurationProperties.{}", i + 1);
        let name = required(p.name.as_deref(), &format!("{at}.name"))?;
        required(p.required, &format!("{at}.required"))?;
        required(p.key, &format!("{at}.key"))?;
        required(p.secret, &format!("{at}.secret"))?;
        if !(1..=50).contains(&name.chars().count()) {
            return Err(validation(format!(
                "{at}.name must be 1 to 50 characters, got '{name}'"
            )));
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(validation(format!(
                "{at}.name: the property '{name}' is declared twice"
            )));
        }
        if let Some(d) = &p.description
            && !(1..=160).contains(&d.chars().count())
        {
            return Err(validation(format!(
                "{at}.description must be 1 to 160 characters"
            )));
        }
        if let Some(t) = &p.kind
            && !["String", "Number", "Boolean"].contains(&t.as_str())
        {
            return Err(validation(format!(
                "{at}.type must be String, Number or Boolean, not '{t}'"
            )));
        }
        if Property::is(p.queryable) && (!Property::is(p.required) || Property::is(p.secret)) {
            return Err(validation(format!(
                "{at}: the queryable property '{name}' must be required and not secret"
            )));
        }
    }
    let queryable = props.iter().filter(|p| Property::is(p.queryable)).count();
    if queryable > 1 {
        return Err(validation(format!(
            "configurationProperties: at most one property may be queryable, found {queryable}"
        )));
    }
    Ok(())
}

/// `{Config:<name>}` in a settings template must name a required property
/// that is not secret (its value ends up in a URL anyone may see).
fn check_templates(
    settings: &BTreeMap<String, String>,
    props: &[Property],
) -> Result<(), ApiError> {
    const KEYS: [&str; 4] = [
        "entityUrlTemplate",
        "executionUrlTemplate",
        "revisionUrlTemplate",
        "thirdPartyConfigurationUrl",
    ];
    for (key, value) in settings {
        if !KEYS.contains(&key.as_str()) {
            return Err(validation(format!(
                "settings.{key} is not a setting; expected one of {}",
                KEYS.join(", ")
            )));
        }
        if !(1..=2048).contains(&value.len()) {
            return Err(validation(format!(
                "settings.{key} must be 1 to 2048 characters"
            )));
        }
        let mut rest = value.as_str();
        while let Some(start) = rest.find('{') {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            let inner = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if inner == "ExternalExecutionId" {
                if key != "executionUrlTemplate" {
                    return Err(validation(format!(
                        "settings.{key}: {{ExternalExecutionId}} may be used only in executionUrlTemplate"
                    )));
                }
                continue;
            }
            let Some(name) = inner.strip_prefix("Config:") else {
                continue;
            };
            let usable = props
                .iter()
                .any(|p| p.name() == name && Property::is(p.required) && !Property::is(p.secret));
            if !usable {
                return Err(validation(format!(
                    "settings.{key}: {{Config:{name}}} must name a configuration property that is required and not secret"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) async fn create<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: CreateInput,
) -> Result<Value, ApiError> {
    let category = required(input.category, "category")?;
    check_category(&category, "category")?;
    let provider = required(input.provider, "provider")?;
    check_pattern(&provider, "provider", 35)?;
    let version = required(input.version, "version")?;
    check_pattern(&version, "version", 9)?;
    let props = input.configuration_properties.unwrap_or_default();
    check_properties(&props)?;
    let (in_min, in_max) = check_counts(input.input_artifact_details, "inputArtifactDetails")?;
    let (out_min, out_max) = check_counts(input.output_artifact_details, "outputArtifactDetails")?;
    let settings = input.settings.unwrap_or_default();
    check_templates(&settings, &props)?;
    let tags = input.tags.unwrap_or_default();
    if tags.len() > 50 {
        return Err(exception(
            "TooManyTagsException",
            format!("A resource can have at most 50 tags, found {}", tags.len()),
        ));
    }
    let mut action_type = json!({
        "id": {"category": category, "owner": "Custom", "provider": provider, "version": version},
        "actionConfigurationProperties": props,
        "inputArtifactDetails": {"minimumCount": in_min, "maximumCount": in_max},
        "outputArtifactDetails": {"minimumCount": out_min, "maximumCount": out_max},
    });
    if !settings.is_empty() {
        action_type["settings"] = json!(settings);
    }
    let record = CustomActionTypeRecord {
        category: category.clone(),
        provider: provider.clone(),
        version: version.clone(),
        definition: json!({"actionType": action_type, "tags": tags}),
        deleted: false,
        created_ms: now_ms(),
    };
    match state
        .store
        .create_custom_action_type(&record, MAX_TYPES, actor)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(m)) if m.contains("at most") => {
            return Err(exception(
                "LimitExceededException",
                format!("At most {MAX_TYPES} custom action types may exist"),
            ));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(validation(format!(
                "The custom action type {category}/Custom/{provider} version {version} already exists, or was deleted (a deleted type cannot be created again: use a new version)"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let mut out = json!({ "actionType": action_type });
    if !tags.is_empty() {
        out["tags"] = json!(tags);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    action_owner_filter: Option<String>,
    next_token: Option<String>,
    #[allow(dead_code)]
    region_filter: Option<String>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let owner = input.action_owner_filter;
    if let Some(o) = &owner
        && !["AWS", "ThirdParty", "Custom"].contains(&o.as_str())
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{o}' at 'actionOwnerFilter' failed to satisfy constraint: Member must satisfy enum value set: [AWS, ThirdParty, Custom]"
        )));
    }
    let wants = |o: &str| owner.as_deref().is_none_or(|f| f == o);
    let mut types: Vec<(String, Value)> = Vec::new();
    if wants("AWS") {
        for (category, provider, (imin, imax), (omin, omax)) in BUILT_IN {
            types.push((
                format!("AWS/{category}/{provider}/1"),
                json!({
                    "id": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
                    "actionConfigurationProperties": [],
                    "inputArtifactDetails": {"minimumCount": imin, "maximumCount": imax},
                    "outputArtifactDetails": {"minimumCount": omin, "maximumCount": omax},
                }),
            ));
        }
    }
    if wants("Custom") {
        for r in state.store.custom_action_types().await? {
            if r.deleted {
                continue;
            }
            types.push((
                format!("Custom/{}/{}/{}", r.category, r.provider, r.version),
                r.definition["actionType"].clone(),
            ));
        }
    }
    types.sort_by(|a, b| a.0.cmp(&b.0));
    let (items, next) = page(
        types,
        |t| t.0.as_str(),
        input.next_token.as_deref(),
        PAGE_SIZE,
    )?;
    let mut out = json!({ "actionTypes": items.into_iter().map(|t| t.1).collect::<Vec<_>>() });
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(crate) struct DeleteInput {
    category: Option<String>,
    provider: Option<String>,
    version: Option<String>,
}

pub(crate) async fn delete<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: DeleteInput,
) -> Result<Value, ApiError> {
    let category = required(input.category, "category")?;
    check_category(&category, "category")?;
    let provider = required(input.provider, "provider")?;
    check_pattern(&provider, "provider", 35)?;
    let version = required(input.version, "version")?;
    check_pattern(&version, "version", 9)?;
    match state
        .store
        .delete_custom_action_type(&category, &provider, &version, actor)
        .await
    {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(action_type_not_found(&category, &provider, &version)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn action_type_not_found(category: &str, provider: &str, version: &str) -> ApiError {
    exception(
        "ActionTypeNotFoundException",
        format!(
            "The custom action type {category}/Custom/{provider} version {version} does not exist"
        ),
    )
}

/// The live custom type of an action, `None` when there is none (never
/// created, or deleted).
pub(crate) async fn live_type<S: Store>(
    store: &S,
    category: &str,
    provider: &str,
    version: &str,
) -> Result<Option<CustomType>, ApiError> {
    match store
        .get_custom_action_type(category, provider, version)
        .await
    {
        Ok(r) if !r.deleted => Ok(Some(CustomType::from_record(&r)?)),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every `owner: Custom` action of a declaration against its type: the
/// type exists and is not deleted, required properties are present, no
/// undeclared property is set, values fit their type, the queryable value
/// is at most 20 of `[A-Za-z0-9_-]`, artifact counts are in range.
pub(crate) async fn check_declaration<S: Store>(
    store: &S,
    declaration: &PipelineDeclaration,
) -> Result<(), ApiError> {
    let invalid = |m: String| exception("InvalidActionDeclarationException", m);
    for stage in &declaration.stages {
        for action in &stage.actions {
            let id = &action.action_type_id;
            if id.owner.value != ActionOwner::Custom {
                continue;
            }
            let (category, provider, version) = (
                id.category.value.as_str(),
                id.provider.value.as_str(),
                id.version.value.as_str(),
            );
            let at = format!("action {} in stage {}", action.name.value, stage.name.value);
            let Some(t) = live_type(store, category, provider, version).await? else {
                return Err(invalid(format!(
                    "{at}: the action type {category}/Custom/{provider} version {version} does not exist (create it with CreateCustomActionType)"
                )));
            };
            for p in &t.action_configuration_properties {
                let value = action.config(p.name());
                if Property::is(p.required) && value.is_none() {
                    return Err(invalid(format!(
                        "{at}: the required configuration property {} is missing",
                        p.name()
                    )));
                }
                let Some(value) = value.map(|v| v.value.as_str()) else {
                    continue;
                };
                if Property::is(p.queryable)
                    && !(value.len() <= 20
                        && value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                {
                    return Err(invalid(format!(
                        "{at}: the queryable property {} must be at most 20 characters of [A-Za-z0-9_-], got '{value}'",
                        p.name()
                    )));
                }
                // A value holding a variable is checked once resolved, by the worker.
                if value.contains("#{") {
                    continue;
                }
                let fits = match p.kind.as_deref() {
                    Some("Number") => value.parse::<f64>().is_ok_and(f64::is_finite),
                    Some("Boolean") => matches!(value, "true" | "false"),
                    _ => true,
                };
                if !fits {
                    return Err(invalid(format!(
                        "{at}: the configuration property {} must be a {}, got '{value}'",
                        p.name(),
                        p.kind.as_deref().unwrap_or("String")
                    )));
                }
            }
            if let Some(c) = &action.configuration {
                for e in &c.entries {
                    if !t
                        .action_configuration_properties
                        .iter()
                        .any(|p| p.name() == e.key.value)
                    {
                        return Err(invalid(format!(
                            "{at}: the configuration property {} is not declared by the action type {category}/Custom/{provider}",
                            e.key.value
                        )));
                    }
                }
            }
            for (what, n, d) in [
                ("input", action.inputs().len(), t.input_artifact_details),
                ("output", action.outputs().len(), t.output_artifact_details),
            ] {
                let min = d.minimum_count.unwrap_or(0) as usize;
                let max = d.maximum_count.unwrap_or(5) as usize;
                if !(min..=max).contains(&n) {
                    return Err(invalid(format!(
                        "{at}: the action type {category}/Custom/{provider} takes {min} to {max} {what} artifacts, found {n}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// (stage, action) → the secret property names of each custom action,
/// whatever the state of its type (a deleted type's secrets stay hidden).
pub(crate) async fn secret_keys<S: Store>(
    store: &S,
    declaration: &Value,
) -> Result<BTreeMap<(String, String), BTreeSet<String>>, ApiError> {
    let mut out = BTreeMap::new();
    for stage in declaration["stages"].as_array().into_iter().flatten() {
        for action in stage["actions"].as_array().into_iter().flatten() {
            let id = &action["actionTypeId"];
            if id["owner"] != "Custom" {
                continue;
            }
            let secrets = type_secrets(store, id).await?;
            if !secrets.is_empty() {
                out.insert(
                    (
                        stage["name"].as_str().unwrap_or("").to_owned(),
                        action["name"].as_str().unwrap_or("").to_owned(),
                    ),
                    secrets,
                );
            }
        }
    }
    Ok(out)
}

/// The secret property names of the type an `actionTypeId` JSON names.
pub(crate) async fn type_secrets<S: Store>(
    store: &S,
    id: &Value,
) -> Result<BTreeSet<String>, ApiError> {
    let s = |k: &str| id[k].as_str().unwrap_or("").to_owned();
    match store
        .get_custom_action_type(&s("category"), &s("provider"), &s("version"))
        .await
    {
        Ok(r) => Ok(CustomType::from_record(&r)?.secrets()),
        Err(StoreError::NotFound) => Ok(BTreeSet::new()),
        Err(e) => Err(e.into()),
    }
}

/// Replaces secret values of a declaration JSON with [`MASK`].
pub(crate) async fn mask_declaration<S: Store>(
    store: &S,
    declaration: &mut Value,
) -> Result<(), ApiError> {
    let secrets = secret_keys(store, declaration).await?;
    if secrets.is_empty() {
        return Ok(());
    }
    for stage in declaration["stages"].as_array_mut().into_iter().flatten() {
        let stage_name = stage["name"].as_str().unwrap_or("").to_owned();
        for action in stage["actions"].as_array_mut().into_iter().flatten() {
            let key = (
                stage_name.clone(),
                action["name"].as_str().unwrap_or("").to_owned(),
            );
            if let Some(names) = secrets.get(&key) {
                mask_map(&mut action["configuration"], names);
            }
        }
    }
    Ok(())
}

/// Masks the named keys of a configuration map (a JSON object).
pub(crate) fn mask_map(config: &mut Value, names: &BTreeSet<String>) {
    if let Some(map) = config.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if names.contains(k) {
                *v = json!(MASK);
            }
        }
    }
}

/// On update: a secret property sent as [`MASK`] keeps the value the
/// current version holds for the same stage and action. A mask with no
/// value to keep is refused.
pub(crate) async fn restore_secrets<S: Store>(
    store: &S,
    new: &mut PipelineDeclaration,
    current: &PipelineDeclaration,
) -> Result<(), ApiError> {
    for stage in &mut new.stages {
        for action in &mut stage.actions {
            let id = &action.action_type_id;
            if id.owner.value != ActionOwner::Custom {
                continue;
            }
            let id_json = json!({
                "category": id.category.value.as_str(),
                "provider": id.provider.value,
                "version": id.version.value,
            });
            let secrets = type_secrets(store, &id_json).await?;
            let Some(config) = action.configuration.as_mut() else {
                continue;
            };
            for entry in &mut config.entries {
                if entry.value.value != MASK || !secrets.contains(&entry.key.value) {
                    continue;
                }
                let old = current
                    .stages
                    .iter()
                    .find(|s| s.name.value == stage.name.value)
                    .and_then(|s| s.actions.iter().find(|a| a.name.value == action.name.value))
                    .and_then(|a| a.config(&entry.key.value));
                match old {
                    Some(v) => entry.value.value = v.value.clone(),
                    None => {
                        return Err(exception(
                            "InvalidActionDeclarationException",
                            format!(
                                "action {} in stage {}: the secret property {} is sent as {MASK}, but the pipeline holds no value for it to keep",
                                action.name.value, stage.name.value, entry.key.value
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, required: bool, secret: bool, queryable: bool) -> Property {
        Property {
            name: Some(name.into()),
            required: Some(required),
            key: Some(true),
            secret: Some(secret),
            queryable: Some(queryable),
            description: None,
            kind: None,
        }
    }

    #[test]
    fn queryable_is_once_required_and_not_secret() {
        assert!(check_properties(&[prop("Q", true, false, true)]).is_ok());
        assert!(check_properties(&[prop("Q", false, false, true)]).is_err());
        assert!(check_properties(&[prop("Q", true, true, true)]).is_err());
        assert!(
            check_properties(&[prop("A", true, false, true), prop("B", true, false, true)])
                .is_err()
        );
        assert!(
            check_properties(&[prop("A", true, false, false), prop("a", true, false, false)])
                .is_err()
        );
        let mut no_flag = prop("A", true, false, false);
        no_flag.secret = None;
        assert!(check_properties(&[no_flag]).is_err());
        let many: Vec<Property> = (0..11)
            .map(|i| prop(&format!("P{i}"), false, false, false))
            .collect();
        assert!(check_properties(&many).is_err());
    }

    #[test]
    fn templates_use_only_required_plain_properties() {
        let props = [
            prop("Url", true, false, false),
            prop("Key", true, true, false),
            prop("Opt", false, false, false),
        ];
        let set = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(
            check_templates(&set("entityUrlTemplate", "https://x/{Config:Url}"), &props).is_ok()
        );
        assert!(
            check_templates(&set("entityUrlTemplate", "https://x/{Config:Key}"), &props).is_err()
        );
        assert!(
            check_templates(&set("entityUrlTemplate", "https://x/{Config:Opt}"), &props).is_err()
        );
        assert!(
            check_templates(
                &set("executionUrlTemplate", "https://x/{ExternalExecutionId}"),
                &props
            )
            .is_ok()
        );
        assert!(
            check_templates(
                &set("entityUrlTemplate", "https://x/{ExternalExecutionId}"),
                &props
            )
            .is_err()
        );
        assert!(check_templates(&set("nope", "https://x"), &props).is_err());
    }

    #[test]
    fn artifact_counts_are_0_to_5_and_ordered() {
        let d = |a, b| {
            Some(ArtifactDetails {
                minimum_count: Some(a),
                maximum_count: Some(b),
            })
        };
        assert_eq!(check_counts(d(0, 5), "x").ok(), Some((0, 5)));
        assert!(check_counts(d(0, 6), "x").is_err());
        assert!(check_counts(d(-1, 1), "x").is_err());
        assert!(check_counts(d(3, 2), "x").is_err());
        assert!(check_counts(None, "x").is_err());
    }

    #[test]
    fn masking_touches_only_the_named_keys() {
        let mut config = json!({"Token": "s3cret", "Url": "https://x"});
        mask_map(&mut config, &BTreeSet::from(["Token".to_owned()]));
        assert_eq!(config, json!({"Token": MASK, "Url": "https://x"}));
    }
}
