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

crate::text_enum! {
    /// The `type` of an error of the metering proxy, as OpenAI's clients read it.
    pub enum ProxyErrorType {
        /// The request or its key is at fault; retrying it unchanged fails again.
        InvalidRequestError = "invalid_request_error",
        /// A rate limit of the key: retry after `Retry-After` seconds.
        Requests = "requests",
        /// The voucher, the key's cap or the organisation's test allowance cannot pay.
        InsufficientQuota = "insufficient_quota",
        /// The AI provider failed or could not be reached.
        UpstreamError = "upstream_error",
        /// The service failed; nothing was forwarded or billed.
        ServerError = "server_error",
    }
}

crate::text_enum! {
    /// The `code` of an error of the metering proxy, for programs to act on.
    pub enum ProxyErrorCode {
        /// The key is unknown, expired or revoked.
        InvalidApiKey = "invalid_api_key",
        /// The programme suspended the key.
        ApiKeySuspended = "api_key_suspended",
        /// The provider refused the programme's own credentials.
        UpstreamAuthFailed = "upstream_auth_failed",
        /// No price is set for the model.
        ModelNotFound = "model_not_found",
        /// The key may not use the model.
        ModelNotAllowed = "model_not_allowed",
        /// The key's requests, tokens or concurrency limit.
        RateLimitExceeded = "rate_limit_exceeded",
        /// The voucher or the key's monthly cap cannot pay for the request.
        InsufficientQuota = "insufficient_quota",
        /// The body is over the proxy's limit.
        RequestTooLarge = "request_too_large",
        /// A field outside the allowlist (`param` says where).
        UnsupportedParameter = "unsupported_parameter",
        /// The provider did not answer in time.
        UpstreamTimeout = "upstream_timeout",
        /// The provider could not be reached.
        UpstreamUnreachable = "upstream_unreachable",
        /// Metering is unavailable; nothing was forwarded.
        ServiceUnavailable = "service_unavailable",
        /// A request with the same `Idempotency-Key` is still being served.
        IdempotencyKeyInUse = "idempotency_key_in_use",
        /// The `Idempotency-Key` was used for another request, or its answer was not kept.
        IdempotencyKeyReused = "idempotency_key_reused",
        /// No endpoint at this path.
        UnknownUrl = "unknown_url",
    }
}
