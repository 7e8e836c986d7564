//! Pure programme rules. Nothing in this crate performs IO: every function is deterministic
//! in its arguments (the current date is always passed in), so each rule has a unit test.

pub mod approval;
pub mod budget;
pub mod challenge;
pub mod codes;
pub mod company;
pub mod consulting;
pub mod disclosure;
pub mod eligibility;
pub mod ids;
pub mod incentive;
pub mod ledger;
pub mod money;
pub mod ownership;
pub mod payment;
pub mod pricing;
pub mod reference;
pub mod region;
pub mod report_period;
pub mod role;
pub mod schema;
pub mod sic;
pub mod states;
pub mod stats;
pub mod uk_time;

pub use codes::{ErrorCode, ProxyErrorCode, ProxyErrorType};
pub use company::{CompanyNumber, CompanyNumberInput};
pub use ids::{
    ApiKeyId, ApplicationId, BudgetLineId, ChallengeId, EntryId, InstanceId, PaymentId, SlotId,
    UserId, VoucherId,
};
pub use money::Money;
pub use reference::{Reference, ReferenceKind};
pub use region::{Region, RegionInput};
pub use role::Role;
pub use sic::SicCode;
pub use states::{
    AccountStatus, ApplicationStatus, BookingStatus, JobTrigger, KeyMode, KeyStatus,
    NotificationStatus, PaymentStatus, RunOutcome, SecondApprovalOutcome, SessionOutcome,
    VoucherState, VoucherStatus,
};
