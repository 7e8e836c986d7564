//! The storage layer's errors. Each names a business outcome the API maps to one HTTP status;
//! anything unexpected from the database stays `Database` and is never shown to a client.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection within the pool timeout, or the database refused one.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("company {company_number} already has a live application or voucher")]
    CompanyAlreadyLive { company_number: String },
    #[error("the application is {status}, not submitted")]
    ApplicationNotPending { status: String },
    #[error("account {account_id} has insufficient funds")]
    InsufficientFunds { account_id: String },
    #[error("transfer {0} already exists with a different body")]
    TransferIdConflict(String),
    #[error("hold {0} was already posted or voided")]
    HoldResolved(String),
    #[error("hold {0} timed out")]
    HoldExpired(String),
    #[error("cannot post {amount_micros} against a hold of {held_micros}")]
    PostExceedsHold {
        amount_micros: i64,
        held_micros: i64,
    },
    #[error("a price for {model} taking effect at {effective_from} already exists")]
    PriceVersionExists {
        model: String,
        effective_from: String,
    },
    #[error("the key was revoked or already rotated")]
    KeyNotRotatable,
    #[error("the key is not suspended")]
    KeyNotSuspended,
    #[error("the key's spend cap for this month is reached")]
    KeySpendCapReached,
    #[error("a concurrent request wrote the same record; retry")]
    Contended,
    /// A challenge refused what was asked at this point of its cycle (entries before or after
    /// it is open, scores outside assessment).
    #[error("{0}")]
    ChallengeClosed(String),
    #[error("this organisation already has an entry in this challenge")]
    EntryExists,
    #[error("this entry is not allocated to you")]
    NotAllocated,
    /// The assessor declared a conflict of interest with the entrant's company, current now.
    #[error("you declared a conflict of interest with company {company_number}: you may not read or score its entries")]
    ConflictOfInterest { company_number: String },
    #[error("{name} holds only {}", voucherd_domain::money::format_micros(*available_micros))]
    BudgetShort { name: String, available_micros: i64 },
    #[error("{0}")]
    NoBudgetLine(String),
    #[error("a budget line named {0:?} already exists")]
    BudgetLineExists(String),
    /// A consulting booking refused: its stable code, and why.
    #[error("{1}")]
    Consulting(voucherd_domain::ErrorCode, String),
    /// A payment refused or not yet applicable: its stable code, and why.
    #[error("{1}")]
    Payment(voucherd_domain::ErrorCode, String),
    /// An approval refused by the four-eyes rule: its stable code, and why.
    #[error("{1}")]
    Approval(voucherd_domain::ErrorCode, String),
    /// A change refused in the state its subject is in (a challenge already open, an award past
    /// the Minimal Financial Assistance limit): its stable code, and why.
    #[error("{1}")]
    Refused(voucherd_domain::ErrorCode, String),
    #[error("ledger invariant violated: {0}")]
    Invariant(String),
    #[error(transparent)]
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for StoreError {
    /// A connection lost mid-query is the database being unavailable, not a bug.
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
        match e {
            diesel::result::Error::DatabaseError(ClosedConnection | UnableToSendCommand, info) => {
                StoreError::Unavailable(info.message().to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
