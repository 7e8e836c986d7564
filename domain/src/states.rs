//! The states and kinds the database stores as text, as enums. [`text_enum!`] gives each one
//! its spelling (`as_str`, `FromStr`, serde) and, with the `sql` feature, diesel's `ToSql` and
//! `FromSql` for `Text` on every backend: a row with a spelling the enum does not know fails to
//! load rather than becoming a string that no comparison matches.

/// Declares a text-stored enum: `text_enum!(/// doc \n pub enum Name { Variant = "spelling", .. })`.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident { $( $(#[doc = $vdoc:literal])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
        pub enum $name {
            $( $(#[doc = $vdoc])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in the database and used on the API.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Each spelling with its documentation, line by line: what the schema lists.
            pub const DOCUMENTED: &'static [(&'static str, &'static [&'static str])] =
                &[$(($text, &[$($vdoc),*])),+];
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), s)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A string of one of the spellings, described by the enum's own documentation.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::schema::one_of(&[$($doc),*], $name::DOCUMENTED)
            }
        }

        impl utoipa::ToSchema for $name {}

        $crate::text_sql!($name, |text: String| text.parse::<$name>().map_err(Into::into));
    };
}

/// Diesel's `ToSql` and `FromSql` for `Text` on every backend, for a type with `as_str` and a
/// way back from the stored text (`text_enum!` and `text_id!` use it; only with `sql`).
#[doc(hidden)]
#[macro_export]
macro_rules! text_sql {
    ($name:ident, $from_text:expr) => {
        #[cfg(feature = "sql")]
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        #[cfg(feature = "sql")]
        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(bytes)?;
                let from_text: fn(String) -> diesel::deserialize::Result<$name> = $from_text;
                from_text(text)
            }
        }
    };
}

text_enum! {
    /// Where an application stands.
    pub enum ApplicationStatus {
        /// Eligible and waiting for an administrator's decision.
        Submitted = "submitted",
        /// Refused by the eligibility rules when it was sent: nobody decides it.
        Ineligible = "ineligible",
        /// Approved once, above `second_approval_above`: no money has moved until a second
        /// administrator confirms.
        AwaitingSecondApproval = "awaiting_second_approval",
        Approved = "approved",
        Rejected = "rejected",
    }
}

impl ApplicationStatus {
    /// Waiting for an administrator (first or second): such an application may still hold its
    /// company number or have its ownership settled.
    pub const PENDING: [ApplicationStatus; 2] = [
        ApplicationStatus::Submitted,
        ApplicationStatus::AwaitingSecondApproval,
    ];
}

text_enum! {
    /// A voucher's state as stored: it is active until the expiry job expires it. (What its
    /// owner sees adds suspension, exhaustion and the wait for a contribution: [`VoucherStatus`].)
    pub enum VoucherState {
        Active = "active",
        Expired = "expired",
    }
}

text_enum! {
    /// A voucher's status as shown on the API and the pages.
    pub enum VoucherStatus {
        Active = "active",
        /// An administrator suspended it; its keys spend nothing until it is reinstated.
        Suspended = "suspended",
        /// Approved with a co-funding condition whose contribution is not (or, after a refund,
        /// no longer) paid; it does not spend until it is (see
        /// `POST /api/v1/vouchers/{id}/contribution`).
        AwaitingContribution = "awaiting_contribution",
        /// Nothing left to spend and nothing held.
        Exhausted = "exhausted",
        Expired = "expired",
    }
}

text_enum! {
    /// A key spends the voucher (`live`) or answers from the sandbox and spends nothing (`test`).
    pub enum KeyMode {
        /// Metered against the voucher (`vk_live_…`).
        Live = "live",
        /// Answered by the built-in sandbox and paid from the organisation's free test
        /// allowance (`vk_test_…`).
        Test = "test",
    }
}

impl Default for KeyMode {
    /// A key spends the voucher unless it is asked to be a test key.
    fn default() -> KeyMode {
        KeyMode::Live
    }
}

text_enum! {
    /// A key's status as shown: it works while `active`. A key that is several at once shows
    /// the first of `revoked`, `suspended`, `expired`.
    pub enum KeyStatus {
        Active = "active",
        /// Suspended by an administrator (misuse, a leak) or by the programme (usage above its
        /// holds past the programme's threshold); it can be reinstated.
        Suspended = "suspended",
        /// Past `expires_at`: the expiry its owner gave it, or the end of a rotated key's grace
        /// period.
        Expired = "expired",
        /// Its owner revoked it: for good. (A rotated key is not revoked: it expires at the
        /// end of its grace period.)
        Revoked = "revoked",
    }
}

text_enum! {
    /// Where a Stripe payment stands.
    pub enum PaymentStatus {
        /// The Checkout page can be paid.
        Open = "open",
        /// Completed with a delayed method that has not cleared yet.
        Processing = "processing",
        Paid = "paid",
        /// The delayed method failed.
        Failed = "failed",
        /// The page expired unpaid.
        Expired = "expired",
        /// In full or in part: see `refunded`.
        Refunded = "refunded",
    }
}

impl PaymentStatus {
    /// A payment that may still be paid (so a new one for the same purpose waits).
    pub const IN_FLIGHT: [PaymentStatus; 2] = [PaymentStatus::Open, PaymentStatus::Processing];
}

text_enum! {
    /// Where a consulting booking stands: booked, cancelled, or the outcome its adviser
    /// recorded.
    pub enum BookingStatus {
        /// Held from the voucher's consulting hours until the outcome is recorded.
        Booked = "booked",
        /// Cancelled before the session; its minutes went back to the voucher.
        Cancelled = "cancelled",
        /// The session took place; its minutes are used.
        Attended = "attended",
        /// The SME did not come; its minutes are used all the same.
        NoShow = "no_show",
    }
}

text_enum! {
    /// What the second administrator decided of a first approval.
    pub enum SecondApprovalOutcome {
        /// Confirmed: the voucher was granted.
        Confirmed = "confirmed",
        /// Rejected: the application was rejected, or released back to the queue.
        Rejected = "rejected",
    }
}

text_enum! {
    /// What started a worker job's run.
    pub enum JobTrigger {
        /// Its cron schedule.
        Schedule = "schedule",
        /// An administrator or the command line.
        Manual = "manual",
    }
}

text_enum! {
    /// How a worker job's run stands or ended.
    pub enum RunOutcome {
        /// Claimed by a worker and not finished yet.
        Running = "running",
        /// Finished; its summary says what it did.
        Succeeded = "succeeded",
        /// Stopped by an error, which its summary gives.
        Failed = "failed",
        /// Left unfinished at its worker's shutdown; another worker may take it over. (A run
        /// whose worker died stays `running` until its heartbeat is stale and it is taken over.)
        Abandoned = "abandoned",
    }
}

text_enum! {
    /// Where a notification in the outbox stands.
    pub enum NotificationStatus {
        /// Not sent yet; tried again at `next_attempt_at`.
        Pending = "pending",
        /// Accepted by the mail server.
        Sent = "sent",
        /// Given up on after its last attempt.
        Failed = "failed",
    }
}

text_enum! {
    /// How a consulting session went, as its adviser records it. Either way the session's
    /// minutes are used.
    pub enum SessionOutcome {
        /// The session took place.
        Attended = "attended",
        /// The SME did not come.
        NoShow = "no_show",
    }
}

impl From<SessionOutcome> for BookingStatus {
    fn from(o: SessionOutcome) -> BookingStatus {
        match o {
            SessionOutcome::Attended => BookingStatus::Attended,
            SessionOutcome::NoShow => BookingStatus::NoShow,
        }
    }
}

text_enum! {
    /// Where an account stands: invited (no password chosen yet), active, or disabled by an
    /// administrator.
    pub enum AccountStatus {
        Invited = "invited",
        Active = "active",
        Disabled = "disabled",
    }
}

text_enum! {
    /// Where a claimed `Idempotency-Key` stands: its request is being served, or its answer
    /// is kept for replay.
    pub enum ClaimState {
        InProgress = "in_progress",
        Completed = "completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_reads_back_as_its_value() {
        for s in VoucherStatus::ALL {
            assert_eq!(s.as_str().parse::<VoucherStatus>(), Ok(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(*s));
        }
        assert_eq!("test".parse::<KeyMode>(), Ok(KeyMode::Test));
    }

    #[test]
    fn the_schema_lists_every_spelling_and_what_the_documented_ones_mean() {
        let schema = serde_json::to_value(<KeyMode as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["live", "test"]));
        assert_eq!(
            schema["description"],
            "A key spends the voucher (`live`) or answers from the sandbox and spends nothing \
             (`test`).\n\n- `live`: Metered against the voucher (`vk_live_…`).\n- `test`: \
             Answered by the built-in sandbox and paid from the organisation's free test \
             allowance (`vk_test_…`)."
        );
        // Undocumented values are listed, not explained.
        let schema =
            serde_json::to_value(<VoucherState as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["active", "expired"]));
        assert!(!schema["description"].as_str().unwrap().contains("- `"));
    }

    #[test]
    fn an_unknown_spelling_is_refused() {
        assert!("Active".parse::<VoucherState>().is_err());
        assert!("".parse::<KeyMode>().is_err());
        assert!(serde_json::from_str::<KeyMode>("\"demo\"").is_err());
    }
}
