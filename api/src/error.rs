//! Error policy of the REST API. Every failure leaves as `application/problem+json` (RFC 9457)
//! with a stable machine-readable `code`; validation failures list the offending field paths.
//! Storage errors are mapped here, once. Unexpected errors are logged with the request id and
//! answered with a bare 500 that reveals nothing of the cause.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use voucherd_domain::ErrorCode;
use voucherd_store::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the offending field, such as `subsidy_declarations[0].amount`, a query
    /// parameter or a header name.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("missing or invalid access token")]
    Unauthenticated,
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("your role may not do this")]
    Forbidden,
    /// The caller's role may do this, but not this caller or not to this subject: an account
    /// whose email is unconfirmed applying, an assessor and an entry from a company they
    /// declared a conflict of interest with.
    #[error("{detail}")]
    Denied { code: ErrorCode, detail: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{detail}")]
    Conflict { code: ErrorCode, detail: String },
    /// The request is well-formed JSON but refused as a whole (a webhook's signature).
    #[error("{detail}")]
    BadRequest { code: ErrorCode, detail: String },
    /// A feature this programme has not configured.
    #[error("{detail}")]
    Disabled { code: ErrorCode, detail: String },
    /// A service the request depends on (Stripe) failed or could not be reached.
    #[error("{0}")]
    BadGateway(String),
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    /// Too many attempts (signing in, asking for a password reset): try again after a while.
    #[error("too many attempts: try again in {} minute(s)", retry_after_secs.div_ceil(60).max(1))]
    TooManyRequests { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Unauthenticated => ErrorCode::Unauthenticated,
            ApiError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::Denied { code, .. } => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict { code, .. } => *code,
            ApiError::BadRequest { code, .. } | ApiError::Disabled { code, .. } => *code,
            ApiError::BadGateway(_) => ErrorCode::PaymentProviderUnavailable,
            ApiError::Unavailable => ErrorCode::Unavailable,
            ApiError::TooManyRequests { .. } => ErrorCode::TooManyAttempts,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// An RFC 9457 problem document, served as `application/problem+json`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:voucherd:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(examples("urn:voucherd:problem:validation_failed"))]
    kind: String,
    /// The HTTP status's reason phrase.
    title: &'a str,
    status: u16,
    detail: String,
    code: ErrorCode,
    /// Present for `validation_failed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    errors: Option<&'a [FieldError]>,
}

pub fn problem_response(
    status: StatusCode,
    code: ErrorCode,
    detail: String,
    errors: Option<&[FieldError]>,
) -> HttpResponse {
    let body = Problem {
        kind: format!("urn:voucherd:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        code,
        errors,
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .body(serde_json::to_string(&body).unwrap_or_default())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Disabled { .. } | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "request failed");
        }
        let errors = match self {
            ApiError::Validation(e) => Some(e.as_slice()),
            _ => None,
        };
        let mut resp = problem_response(self.status_code(), self.code(), self.to_string(), errors);
        if matches!(self, ApiError::Unauthenticated) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(*retry_after_secs),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::Unavailable
            }
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::EmailTaken => ApiError::conflict(ErrorCode::EmailTaken, e.to_string()),
            StoreError::CompanyAlreadyLive { .. } => {
                ApiError::conflict(ErrorCode::CompanyAlreadyLive, e.to_string())
            }
            StoreError::ApplicationNotPending { .. } => {
                ApiError::conflict(ErrorCode::ApplicationAlreadyDecided, e.to_string())
            }
            StoreError::InsufficientFunds { ref account_id }
                if account_id == voucherd_store::ledger::PROGRAMME_FUND =>
            {
                ApiError::conflict(
                    ErrorCode::FundInsufficient,
                    "the programme fund does not hold enough to grant this voucher",
                )
            }
            StoreError::InsufficientFunds { .. } => {
                ApiError::conflict(ErrorCode::InsufficientFunds, e.to_string())
            }
            StoreError::TransferIdConflict(_) => ApiError::conflict(
                ErrorCode::IdempotencyKeyReused,
                "this idempotency key was already used with a different request",
            ),
            StoreError::Contended => ApiError::conflict(ErrorCode::Contended, e.to_string()),
            StoreError::KeyNotSuspended => {
                ApiError::conflict(ErrorCode::KeyNotSuspended, e.to_string())
            }
            StoreError::ChallengeClosed(_) => {
                ApiError::conflict(ErrorCode::ChallengeNotAccepting, e.to_string())
            }
            StoreError::EntryExists => ApiError::conflict(ErrorCode::EntryExists, e.to_string()),
            StoreError::NotAllocated => ApiError::Forbidden,
            StoreError::ConflictOfInterest { .. } => ApiError::Denied {
                code: ErrorCode::ConflictOfInterest,
                detail: e.to_string(),
            },
            StoreError::BudgetShort { .. } => {
                ApiError::conflict(ErrorCode::BudgetInsufficient, e.to_string())
            }
            StoreError::NoBudgetLine(_) => {
                ApiError::conflict(ErrorCode::NoBudgetLine, e.to_string())
            }
            StoreError::Consulting(code, ref detail) => ApiError::conflict(code, detail.clone()),
            StoreError::Payment(code, ref detail) => ApiError::conflict(code, detail.clone()),
            StoreError::Approval(code, ref detail) => ApiError::conflict(code, detail.clone()),
            // A link or code that cannot be used is a bad request, not a conflict of state.
            StoreError::Refused(
                code @ (ErrorCode::InvalidToken | ErrorCode::WrongCode),
                detail,
            ) => ApiError::BadRequest { code, detail },
            StoreError::Refused(code, ref detail) => ApiError::conflict(code, detail.clone()),
            StoreError::BudgetLineExists(_) => {
                ApiError::conflict(ErrorCode::BudgetLineExists, e.to_string())
            }
            StoreError::PriceVersionExists { .. } => {
                ApiError::conflict(ErrorCode::PriceVersionExists, e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}
