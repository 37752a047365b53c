//! The AWS JSON 1.0/1.1 protocol: operation dispatch, bodies, responses.
//!
//! A request is `POST /` with `X-Amz-Target: <targetPrefix>.<Operation>`,
//! `Content-Type: application/x-amz-json-1.1` (1.0 for Step Functions) and a
//! JSON object body. A success is 200 with a JSON object; an error is a JSON
//! object `{"__type": "<Code>", "message": "..."}` with the code's HTTP
//! status and an `x-amzn-ErrorType` header. Every response carries
//! `x-amzn-RequestId`. Timestamps are epoch seconds as JSON numbers.
//!
//! Newer botocore models for CodePipeline, CodeBuild and CodeDeploy also
//! list `smithy-rpc-v2-cbor`; botocore prefers `json` when a model offers
//! both, so the JSON protocol is what boto3 and the AWS CLI send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{AwsError, ErrorCode};
use crate::sigv4::VerifiedCaller;

/// An AWS service spoken over the JSON protocol, with the identifiers its
/// botocore model declares (`metadata.targetPrefix`, `signingName` or
/// `endpointPrefix`, `jsonVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// CodePipeline, API 2015-07-09.
    CodePipeline,
    /// CodeBuild, API 2016-10-06.
    CodeBuild,
    /// CodeDeploy, API 2014-10-06.
    CodeDeploy,
    /// Step Functions, API 2016-11-23 (JSON 1.0).
    StepFunctions,
    /// EventBridge, API 2015-10-07.
    Events,
    /// Systems Manager (Parameter Store), API 2014-11-06.
    Ssm,
    /// Secrets Manager, API 2017-10-17.
    SecretsManager,
}

impl Service {
    /// Every service this module knows.
    pub const ALL: [Service; 7] = [
        Service::CodePipeline,
        Service::CodeBuild,
        Service::CodeDeploy,
        Service::StepFunctions,
        Service::Events,
        Service::Ssm,
        Service::SecretsManager,
    ];

    /// The `X-Amz-Target` prefix, e.g. `CodePipeline_20150709`.
    pub fn target_prefix(self) -> &'static str {
        match self {
            Service::CodePipeline => "CodePipeline_20150709",
            Service::CodeBuild => "CodeBuild_20161006",
            Service::CodeDeploy => "CodeDeploy_20141006",
            Service::StepFunctions => "AWSStepFunctions",
            Service::Events => "AWSEvents",
            Service::Ssm => "AmazonSSM",
            Service::SecretsManager => "secretsmanager",
        }
    }

    /// The SigV4 signing name in the credential scope, e.g. `codepipeline`.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::CodePipeline => "codepipeline",
            Service::CodeBuild => "codebuild",
            Service::CodeDeploy => "codedeploy",
            Service::StepFunctions => "states",
            Service::Events => "events",
            Service::Ssm => "ssm",
            Service::SecretsManager => "secretsmanager",
        }
    }

    /// The JSON protocol version: `"1.1"`, or `"1.0"` for Step Functions.
    pub fn json_version(self) -> &'static str {
        match self {
            Service::StepFunctions => "1.0",
            _ => "1.1",
        }
    }

    /// The `Content-Type` of requests and responses.
    pub fn content_type(self) -> &'static str {
        match self {
            Service::StepFunctions => "application/x-amz-json-1.0",
            _ => "application/x-amz-json-1.1",
        }
    }

    /// The service whose target prefix is `prefix`.
    pub fn from_target_prefix(prefix: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| s.target_prefix() == prefix)
    }

    /// Refuses a caller whose credential scope names another service, with
    /// the error AWS sends for it.
    pub fn check_caller(self, caller: &VerifiedCaller) -> Result<(), AwsError> {
        if caller.service == self.signing_name() {
            Ok(())
        } else {
            Err(AwsError::new(
                ErrorCode::InvalidSignatureException,
                format!(
                    "Credential should be scoped to correct service: '{}'.",
                    self.signing_name()
                ),
            ))
        }
    }
}

/// An `X-Amz-Target` split into its service and operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The service the prefix names.
    pub service: Service,
    /// The operation, e.g. `ListPipelines`.
    pub operation: &'a str,
}

/// Parses `X-Amz-Target` against the services a server offers.
///
/// A missing header, an unknown prefix or a malformed operation name is
/// `UnknownOperationException`, as AWS answers.
pub fn parse_target<'a>(
    header: Option<&'a str>,
    offered: &[Service],
) -> Result<Target<'a>, AwsError> {
    let unknown = |what: &str| AwsError::new(ErrorCode::UnknownOperationException, what.to_owned());
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or_else(|| {
        unknown("The X-Amz-Target header is missing: it must name the operation, e.g. CodePipeline_20150709.ListPipelines.")
    })?;
    let (prefix, operation) = header
        .rsplit_once('.')
        .ok_or_else(|| unknown("X-Amz-Target must be '<targetPrefix>.<Operation>'."))?;
    let service = Service::from_target_prefix(prefix)
        .filter(|s| offered.contains(s))
        .ok_or_else(|| {
            AwsError::new(
                ErrorCode::UnknownOperationException,
                format!("This server offers no service with target prefix '{prefix}'."),
            )
        })?;
    let valid = operation.len() <= 128
        && operation.starts_with(|c: char| c.is_ascii_uppercase())
        && operation.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        return Err(unknown(
            "The operation in X-Amz-Target is not a valid operation name.",
        ));
    }
    Ok(Target { service, operation })
}

/// Checks the request `Content-Type` for a service. A missing one is
/// accepted; `application/json` is accepted too (some HTTP tools send it),
/// anything else is `SerializationException`.
pub fn check_content_type(content_type: Option<&str>, service: Service) -> Result<(), AwsError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(service.content_type())
        || media.eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(AwsError::new(
            ErrorCode::SerializationException,
            format!(
                "Content-Type must be {}, not '{ct}'.",
                service.content_type()
            ),
        ))
    }
}

/// Parses a request body into an operation's input type. An empty body is
/// read as `{}`; anything not JSON, not an object, or not matching the type
/// is `SerializationException` (constraint checks that follow are the
/// handler's, as `ValidationException`).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        AwsError::new(
            ErrorCode::SerializationException,
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(AwsError::new(
            ErrorCode::SerializationException,
            "The request body must be a JSON object.",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        AwsError::new(
            ErrorCode::SerializationException,
            format!("The request body does not match the operation's input: {e}"),
        )
    })
}

/// A response ready to write: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonResponse {
    /// The HTTP status.
    pub status: u16,
    /// Headers to send, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl JsonResponse {
    /// A 200 response with `output` as body.
    pub fn success(service: Service, output: &serde_json::Value, request_id: &str) -> Self {
        let body = serde_json::to_vec(output).unwrap_or_else(|_| b"{}".to_vec());
        JsonResponse {
            status: 200,
            headers: vec![
                ("Content-Type", service.content_type().to_owned()),
                ("x-amzn-RequestId", request_id.to_owned()),
            ],
            body,
        }
    }

    /// The error response for `error`: `{"__type", "message"}`, the code's
    /// status and `x-amzn-ErrorType`.
    pub fn error(service: Service, error: &AwsError, request_id: &str) -> Self {
        let body = serde_json::json!({
            "__type": error.code.as_str(),
            "message": error.message,
        });
        JsonResponse {
            status: error.status(),
            headers: vec![
                ("Content-Type", service.content_type().to_owned()),
                ("x-amzn-RequestId", request_id.to_owned()),
                ("x-amzn-ErrorType", error.code.as_str().to_owned()),
            ],
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// A fresh request id in UUID form (`8-4-4-4-12` lowercase hex, version 4
/// layout). Unique within a process and very likely across processes: it is
/// a hash of the time, the process id and a counter, not a secret.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(n.to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let mut b: [u8; 32] = h.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// A timestamp as the JSON protocol writes it: epoch seconds, with
/// milliseconds as a fraction when there are any.
pub fn timestamp(t: SystemTime) -> serde_json::Value {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_millis())),
        Err(e) => {
            let d = e.duration();
            let ms = -(d.as_millis() as i64);
            (ms.div_euclid(1000), ms.rem_euclid(1000))
        }
    };
    if millis == 0 {
        serde_json::Value::from(secs)
    } else {
        serde_json::Value::from(secs as f64 + millis as f64 / 1000.0)
    }
}

/// Reads a JSON-protocol timestamp: epoch seconds as a number (integer or
/// fractional) or as a numeric string. `None` for anything else.
pub fn parse_timestamp(v: &serde_json::Value) -> Option<SystemTime> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !secs.is_finite() || secs.abs() > 1e13 {
        return None;
    }
    let d = std::time::Duration::from_secs_f64(secs.abs());
    if secs >= 0.0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const OFFERED: [Service; 2] = [Service::CodePipeline, Service::CodeBuild];

    #[test]
    fn targets_parse_against_offered_services() {
        let t = parse_target(Some("CodePipeline_20150709.ListPipelines"), &OFFERED);
        assert_eq!(
            t,
            Ok(Target {
                service: Service::CodePipeline,
                operation: "ListPipelines"
            })
        );
        for bad in [
            None,
            Some(""),
            Some("ListPipelines"),
            Some("CodePipeline_20150709."),
            Some("CodePipeline_20150709.list-pipelines"),
            Some("AWSStepFunctions.StartExecution"),
            Some("Nope_2020.X"),
        ] {
            let e = parse_target(bad, &OFFERED).map(|_| ()).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnknownOperationException, "{bad:?}");
        }
    }

    #[test]
    fn error_response_has_aws_shape() {
        let err = AwsError::service("PipelineNotFoundException", 400, "no pipeline 'x'");
        let r = JsonResponse::error(Service::CodePipeline, &err, "rid");
        assert_eq!(r.status, 400);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"__type": "PipelineNotFoundException", "message": "no pipeline 'x'"})
        );
        assert!(
            r.headers
                .contains(&("x-amzn-ErrorType", "PipelineNotFoundException".into()))
        );
        assert!(
            r.headers
                .contains(&("Content-Type", "application/x-amz-json-1.1".into()))
        );
    }

    #[test]
    fn bodies_parse_or_fail_with_serialization_exception() {
        type In = std::collections::BTreeMap<String, String>;
        assert!(parse_body::<In>(b"").is_ok());
        assert!(parse_body::<In>(b"{\"name\":\"x\"}").is_ok());
        for bad in [&b"{"[..], b"[]", b"{\"name\": 5}", b"\xff"] {
            let e = parse_body::<In>(bad).map(|_| ()).unwrap_err();
            assert_eq!(e.code, ErrorCode::SerializationException);
        }
    }

    #[test]
    fn request_ids_are_unique_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn timestamps_are_epoch_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_440_938_160_250);
        assert_eq!(timestamp(t), serde_json::json!(1_440_938_160.25));
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(5)),
            serde_json::json!(5)
        );
        assert_eq!(
            parse_timestamp(&serde_json::json!(1_440_938_160.25)),
            Some(t)
        );
        assert_eq!(
            parse_timestamp(&serde_json::json!("5")),
            Some(UNIX_EPOCH + Duration::from_secs(5))
        );
        assert_eq!(parse_timestamp(&serde_json::json!("2015-08-30")), None);
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("application/x-amz-json-1.1"), Service::CodeBuild).is_ok());
        assert!(
            check_content_type(Some("application/x-amz-json-1.0"), Service::StepFunctions).is_ok()
        );
        assert!(check_content_type(None, Service::CodeBuild).is_ok());
        assert!(check_content_type(Some("text/plain"), Service::CodeBuild).is_err());
    }
}
