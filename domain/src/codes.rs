//! The machine-readable `code` of every refusal the REST API gives (problem+json), as one
//! enum: a refusal is chosen by its variant, never by its words, and the list of codes a
//! client may meet is this one.

crate::text_enum! {
    /// Why a request was refused, for programs to act on (the words are for people).
    pub enum ErrorCode {
        AlreadyExpired = "already_expired",
        AlreadySuspended = "already_suspended",
        AlreadyVerified = "already_verified",
        ApplicationAlreadyDecided = "application_already_decided",
        BookingClosed = "booking_closed",
        BookingInProgress = "booking_in_progress",
        BudgetInsufficient = "budget_insufficient",
        BudgetLineExists = "budget_line_exists",
        ChallengeCancelled = "challenge_cancelled",
        ChallengeDecided = "challenge_decided",
        ChallengeNotAccepting = "challenge_not_accepting",
        ChallengeOpen = "challenge_open",
        CompanyAlreadyLive = "company_already_live",
        ConflictOfInterest = "conflict_of_interest",
        ConsultingHoursShort = "consulting_hours_short",
        Contended = "contended",
        ContributionNotDue = "contribution_not_due",
        DuplicateEvent = "duplicate_event",
        EmailTaken = "email_taken",
        EmailUnverified = "email_unverified",
        EntryExists = "entry_exists",
        Forbidden = "forbidden",
        FundInsufficient = "fund_insufficient",
        HasVoucher = "has_voucher",
        IdempotencyKeyReused = "idempotency_key_reused",
        IncentivesChanged = "incentives_changed",
        InsufficientFunds = "insufficient_funds",
        Internal = "internal",
        InvalidCredentials = "invalid_credentials",
        InvalidPayload = "invalid_payload",
        InvalidSignature = "invalid_signature",
        InvalidToken = "invalid_token",
        InvitationAccepted = "invitation_accepted",
        KeyNotRotatable = "key_not_rotatable",
        KeyNotSuspended = "key_not_suspended",
        LastAdministrator = "last_administrator",
        MalformedJson = "malformed_json",
        MfaLimitExceeded = "mfa_limit_exceeded",
        NoBudgetLine = "no_budget_line",
        NoConsultingHours = "no_consulting_hours",
        NoEvidenceToCheck = "no_evidence_to_check",
        NoSecondApprovalPending = "no_second_approval_pending",
        NoVoucher = "no_voucher",
        NotAnSme = "not_an_sme",
        NotFound = "not_found",
        NotSuspended = "not_suspended",
        OwnAccount = "own_account",
        OwnershipRefused = "ownership_refused",
        PayloadTooLarge = "payload_too_large",
        PaymentExpired = "payment_expired",
        PaymentInProgress = "payment_in_progress",
        PaymentNotYetKnown = "payment_not_yet_known",
        PaymentProviderUnavailable = "payment_provider_unavailable",
        PaymentsDisabled = "payments_disabled",
        PriceVersionExists = "price_version_exists",
        ReportExists = "report_exists",
        RefundWaitingOnHolds = "refund_waiting_on_holds",
        SameApprover = "same_approver",
        SessionNotStarted = "session_not_started",
        SlotOverlaps = "slot_overlaps",
        SlotPast = "slot_past",
        SlotTaken = "slot_taken",
        TooLateToCancel = "too_late_to_cancel",
        TooManyAttempts = "too_many_attempts",
        Unauthenticated = "unauthenticated",
        Unavailable = "unavailable",
        UnknownSicCode = "unknown_sic_code",
        UnsupportedMediaType = "unsupported_media_type",
        ValidationFailed = "validation_failed",
        VoucherExpired = "voucher_expired",
        VoucherInactive = "voucher_inactive",
        WrongCode = "wrong_code",
    }
}
#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_is_spelt_once_in_snake_case_and_reads_back() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is spelt twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert_eq!(s.parse::<ErrorCode>(), Ok(*code));
        }
        assert!("Validation_Failed".parse::<ErrorCode>().is_err());
    }
}
