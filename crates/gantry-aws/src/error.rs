//! Errors in AWS's shape: an error code, an HTTP status and a message.
//!
//! [`AwsError`] is what an AWS JSON protocol response carries
//! (`{"__type": code, "message": ...}`); [`AuthError`] is why SigV4
//! verification refused a request, and converts into the `AwsError` that
//! AWS's JSON-protocol services send for the same failure, so SDKs raise the
//! exception their users already handle.

use std::borrow::Cow;
use std::fmt;

/// An AWS error code together with the HTTP status AWS sends it with.
///
/// The named variants are the errors common to every AWS JSON-protocol
/// service (the "Common Errors" page of each API reference) and the ones
/// SigV4 failures produce; statuses are AWS's. A service's own modelled
/// exceptions (`PipelineNotFoundException`, `ResourceNotFoundException`
/// for CodeBuild, ...) are [`ErrorCode::Service`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the input fails a constraint of the operation's model.
    ValidationException,
    /// 400: the body is not JSON, or a member has the wrong JSON type.
    SerializationException,
    /// 400: `X-Amz-Target` names no operation of the service.
    UnknownOperationException,
    /// 400: the caller may not perform the operation. JSON-protocol services
    /// of the CodePipeline generation send 400, not 403.
    AccessDeniedException,
    /// 400: the request was refused by rate limiting; SDKs retry it.
    ThrottlingException,
    /// 500: an unexpected failure on the server; SDKs retry it.
    InternalFailure,
    /// 503: the server is temporarily unable to answer; SDKs retry it.
    ServiceUnavailable,
    /// 403: no `Authorization` header and no presigned query parameters.
    MissingAuthenticationTokenException,
    /// 400: the signature is present but malformed or missing a part.
    IncompleteSignatureException,
    /// 400: the signature does not match, or its time is out of range.
    InvalidSignatureException,
    /// 400: the access key id (or a session token) is not known.
    UnrecognizedClientException,
    /// A service-specific exception from the service's model.
    Service {
        /// The exception's shape name, e.g. `PipelineNotFoundException`.
        code: Cow<'static, str>,
        /// The HTTP status; 400 for nearly every modelled exception.
        status: u16,
    },
}

impl ErrorCode {
    /// The code as it goes into `__type`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::ValidationException => "ValidationException",
            ErrorCode::SerializationException => "SerializationException",
            ErrorCode::UnknownOperationException => "UnknownOperationException",
            ErrorCode::AccessDeniedException => "AccessDeniedException",
            ErrorCode::ThrottlingException => "ThrottlingException",
            ErrorCode::InternalFailure => "InternalFailure",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            ErrorCode::IncompleteSignatureException => "IncompleteSignatureException",
            ErrorCode::InvalidSignatureException => "InvalidSignatureException",
            ErrorCode::UnrecognizedClientException => "UnrecognizedClientException",
            ErrorCode::Service { code, .. } => code,
        }
    }

    /// The HTTP status AWS sends with this code.
    pub fn status(&self) -> u16 {
        match self {
            ErrorCode::InternalFailure => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::MissingAuthenticationTokenException => 403,
            ErrorCode::Service { status, .. } => *status,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as an AWS JSON-protocol service reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The code (`__type`) and its HTTP status.
    pub code: ErrorCode,
    /// The human-readable `message`.
    pub message: String,
}

impl AwsError {
    /// An error with one of the common codes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AwsError {
            code,
            message: message.into(),
        }
    }

    /// A service's modelled exception, e.g.
    /// `AwsError::service("PipelineNotFoundException", 400, "...")`.
    pub fn service(
        code: impl Into<Cow<'static, str>>,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        AwsError::new(
            ErrorCode::Service {
                code: code.into(),
                status,
            },
            message,
        )
    }

    /// `ValidationException` (400).
    pub fn validation(message: impl Into<String>) -> Self {
        AwsError::new(ErrorCode::ValidationException, message)
    }

    /// `InternalFailure` (500). Keep details in the server log, not here.
    pub fn internal(message: impl Into<String>) -> Self {
        AwsError::new(ErrorCode::InternalFailure, message)
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

/// Why SigV4 verification refused a request.
///
/// Each variant maps to the code an AWS JSON-protocol service answers with
/// (see [`AuthError::code`]); the `Display` text is the message to send.
/// No variant ever carries a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Neither an `Authorization` header nor `X-Amz-Algorithm` in the query.
    #[error("Missing Authentication Token")]
    MissingAuthentication,
    /// The signature is malformed: a missing or unparsable part.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not one the lookup knows.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// A session token came with the request; Gantry issues none.
    #[error(
        "The security token included in the request is invalid: this server issues no session tokens, so X-Amz-Security-Token is not accepted."
    )]
    SessionTokenNotAccepted,
    /// The credential scope names a region or service this server refuses.
    #[error("{0}")]
    WrongScope(String),
    /// The recomputed signature differs from the one sent.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch,
    /// `x-amz-content-sha256` does not match the body that arrived.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHashMismatch,
    /// The payload is declared unsigned, and this verifier requires signed bodies.
    #[error("The payload hash '{0}' is not accepted here: sign the request body.")]
    UnsignedPayloadRefused(String),
    /// The request time is more than the allowed skew before the server's clock.
    #[error("Signature expired: {signed} is now earlier than {limit} ({now} - {minutes} min.)")]
    Expired {
        /// The request's `X-Amz-Date` (or, presigned, date plus expiry).
        signed: String,
        /// The earliest time accepted.
        limit: String,
        /// The server's time.
        now: String,
        /// The allowed skew in minutes (0 for an expired presigned URL).
        minutes: u64,
    },
    /// The request time is more than the allowed skew after the server's clock.
    #[error(
        "Signature not yet current: {signed} is still later than {limit} ({now} + {minutes} min.)"
    )]
    NotYetValid {
        /// The request's `X-Amz-Date`.
        signed: String,
        /// The latest time accepted.
        limit: String,
        /// The server's time.
        now: String,
        /// The allowed skew in minutes.
        minutes: u64,
    },
}

impl AuthError {
    /// The AWS JSON-protocol error code for this failure.
    ///
    /// Query-protocol services (STS, EC2) spell some of these differently
    /// (`SignatureDoesNotMatch`, `InvalidClientTokenId`, `RequestExpired`);
    /// Gantry serves only JSON-protocol APIs, which use the codes here.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::MissingAuthentication => ErrorCode::MissingAuthenticationTokenException,
            AuthError::Incomplete(_) => ErrorCode::IncompleteSignatureException,
            AuthError::UnknownAccessKey | AuthError::SessionTokenNotAccepted => {
                ErrorCode::UnrecognizedClientException
            }
            AuthError::WrongScope(_)
            | AuthError::SignatureMismatch
            | AuthError::PayloadHashMismatch
            | AuthError::UnsignedPayloadRefused(_)
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. } => ErrorCode::InvalidSignatureException,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// Whether the failure is the clock: the signature may be right but its
    /// time is outside the window (what other SDKs call a clock-skew error).
    pub fn is_time_skew(&self) -> bool {
        matches!(
            self,
            AuthError::Expired { .. } | AuthError::NotYetValid { .. }
        )
    }
}

impl From<AuthError> for AwsError {
    fn from(e: AuthError) -> Self {
        AwsError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors_map_to_json_protocol_codes() {
        let cases = [
            (
                AuthError::MissingAuthentication,
                "MissingAuthenticationTokenException",
                403,
            ),
            (
                AuthError::Incomplete("x".into()),
                "IncompleteSignatureException",
                400,
            ),
            (
                AuthError::UnknownAccessKey,
                "UnrecognizedClientException",
                400,
            ),
            (
                AuthError::SessionTokenNotAccepted,
                "UnrecognizedClientException",
                400,
            ),
            (
                AuthError::SignatureMismatch,
                "InvalidSignatureException",
                400,
            ),
        ];
        for (err, code, status) in cases {
            let aws = AwsError::from(err);
            assert_eq!((aws.code.as_str(), aws.status()), (code, status));
        }
    }

    #[test]
    fn common_codes_have_aws_statuses() {
        assert_eq!(ErrorCode::InternalFailure.status(), 500);
        assert_eq!(ErrorCode::ServiceUnavailable.status(), 503);
        assert_eq!(ErrorCode::AccessDeniedException.status(), 400);
        assert_eq!(ErrorCode::ThrottlingException.status(), 400);
        let e = AwsError::service("ConflictException", 409, "busy");
        assert_eq!((e.code.as_str(), e.status()), ("ConflictException", 409));
    }

    #[test]
    fn expiry_message_has_aws_wording() {
        let e = AuthError::Expired {
            signed: "20150830T123600Z".into(),
            limit: "20150830T123700Z".into(),
            now: "20150830T125200Z".into(),
            minutes: 15,
        };
        assert_eq!(
            e.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T125200Z - 15 min.)"
        );
        assert!(e.is_time_skew());
    }
}
