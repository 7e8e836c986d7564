//! Thin handlers: parse the request into domain types, call the store, shape the response.

pub mod applications;
pub mod budget;
pub mod challenges;
pub mod consulting;
pub mod health;
pub mod incentives;
pub mod jobs;
pub mod me;
pub mod overruns;
pub mod payments;
pub mod prices;
pub mod programme;
pub mod reports;
pub mod users;
pub mod vouchers;

use crate::error::ApiError;
use serde::Deserialize;
use validator::Validate;

/// `?limit=&offset=` on list routes; bounded so no request can ask for everything.
#[derive(Debug, Default, Deserialize, Validate)]
pub struct Page {
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100)
    }
    pub fn offset(&self) -> i64 {
        self.offset.unwrap_or(0)
    }
}

/// Parses a query string with the same field-path errors as bodies.
pub fn query<T: serde::de::DeserializeOwned + Validate>(
    req: &actix_web::HttpRequest,
) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(req.query_string().as_bytes());
    // PostgreSQL cannot store or compare text holding NUL: refused here, by name, as invalid.
    if let Some((name, _)) = pairs
        .clone()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::field(
            &name,
            crate::extract::NUL_REFUSED.to_string(),
        ));
    }
    let q: T = serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs))
        .map_err(|e| {
            let msg = e.inner().to_string();
            // A value that does not parse is named by its path; an unknown or missing
            // parameter only in the message ("unknown field `x`").
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                msg.split('`').nth(1).unwrap_or("query").to_string()
            } else {
                path
            };
            ApiError::field(&field, msg)
        })?;
    q.validate()
        .map_err(|e| ApiError::Validation(crate::extract::flatten(&e)))?;
    Ok(q)
}
