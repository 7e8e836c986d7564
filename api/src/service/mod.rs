//! The typed core that the REST API and the pages share: one function per operation, taking
//! the caller and typed input and returning typed views (`crate::views`). Each function
//! enforces what its caller may see (an applicant sees only their own vouchers, keys and
//! applications) once, here. Which roles may call an operation at all is the route table's
//! (`crate::routes`): the API's guard enforces it before a handler runs, and the pages' guard
//! before a page that is built on that route. Errors are [`crate::error::ApiError`], mapped
//! once to problem+json for the API and once to GOV.UK error pages and inline errors for the
//! pages (`docs/ARCHITECTURE.md`, "One typed core").

pub mod accounts;
pub mod applications;
pub mod challenges;
pub mod consulting;
pub mod incentives;
pub mod operations;
pub mod payments;
pub mod prices;
pub mod programme;
pub mod reports;
pub mod users;
pub mod vouchers;

use crate::error::ApiError;

/// A client's idempotency key (the `Idempotency-Key` header, or a page's one-time form
/// nonce): 1 to 100 letters, digits and `- _ . :`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(key: &str) -> Result<IdempotencyKey, ApiError> {
        let ok = !key.is_empty()
            && key.len() <= 100
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if ok {
            Ok(IdempotencyKey(key.to_string()))
        } else {
            Err(ApiError::field(
                "Idempotency-Key",
                "must be 1 to 100 characters of letters, digits, - _ . :",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The programme's clock: pages and API agree on what has started and what is due.
pub fn now(state: &crate::state::AppState) -> chrono::NaiveDateTime {
    state.clock.now()
}
