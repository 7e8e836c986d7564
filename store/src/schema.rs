// Written by hand to match migrations/{sqlite,postgresql}; both backends share these names.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        full_name -> Text,
        role -> Text,
        created_at -> Timestamp,
        email_verified_at -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        ended_reason -> Nullable<Text>,
    }
}

diesel::table! {
    account_tokens (id) {
        id -> Text,
        user_id -> Text,
        purpose -> Text,
        code_hash -> Nullable<Text>,
        failed_attempts -> Integer,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(account_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, sessions, account_tokens);

diesel::table! {
    accounts (id) {
        id -> Text,
        kind -> Text,
        flags -> Integer,
        currency -> Text,
        debits_pending -> BigInt,
        debits_posted -> BigInt,
        credits_pending -> BigInt,
        credits_posted -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    transfers (id) {
        id -> Text,
        debit_account_id -> Text,
        credit_account_id -> Text,
        amount -> BigInt,
        kind -> Text,
        pending_id -> Nullable<Text>,
        code -> Text,
        memo -> Text,
        timeout_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    applications (id) {
        id -> Text,
        applicant_id -> Text,
        company_number -> Text,
        company_name -> Text,
        employees -> Integer,
        annual_turnover -> BigInt,
        balance_sheet_total -> BigInt,
        region -> Text,
        sic_code -> Text,
        trading_since -> Date,
        use_case -> Text,
        subsidy_declarations -> Text,
        eligible -> Bool,
        checks -> Text,
        status -> Text,
        live_company_number -> Nullable<Text>,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
        decision_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        university_spin_off -> Bool,
        ownership -> Text,
        ownership_method -> Nullable<Text>,
        ownership_by -> Nullable<Text>,
        ownership_at -> Nullable<Timestamp>,
        ownership_note -> Nullable<Text>,
        reference -> Text,
    }
}

diesel::table! {
    vouchers (id) {
        id -> Text,
        application_id -> Text,
        owner_id -> Text,
        account_id -> Text,
        company_number -> Text,
        currency -> Text,
        granted -> BigInt,
        status -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        budget_line_id -> Nullable<Text>,
        contribution_micros -> BigInt,
        contribution_paid_at -> Nullable<Timestamp>,
        suspended_at -> Nullable<Timestamp>,
        suspension_reason -> Nullable<Text>,
        reference -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        voucher_id -> Text,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        mode -> Text,
        allowed_models -> Nullable<Text>,
        rpm -> Nullable<Integer>,
        tpm -> Nullable<Integer>,
        max_concurrent -> Nullable<Integer>,
        monthly_spend_cap -> Nullable<BigInt>,
        expires_at -> Nullable<Timestamp>,
        rotated_to -> Nullable<Text>,
        suspended_at -> Nullable<Timestamp>,
        suspension_reason -> Nullable<Text>,
    }
}

diesel::table! {
    key_spend (api_key_id, month) {
        api_key_id -> Text,
        month -> Text,
        spent -> BigInt,
        held -> BigInt,
    }
}

diesel::table! {
    capped_holds (hold_id) {
        hold_id -> Text,
        api_key_id -> Text,
        month -> Text,
        amount -> BigInt,
    }
}

diesel::table! {
    prices (id) {
        id -> Text,
        model -> Text,
        input_per_million -> BigInt,
        cached_input_per_million -> BigInt,
        output_per_million -> BigInt,
        effective_from -> Timestamp,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    usage_records (id) {
        id -> Text,
        request_id -> Text,
        voucher_id -> Text,
        api_key_id -> Text,
        model -> Text,
        price_id -> Text,
        input_per_million -> BigInt,
        cached_input_per_million -> BigInt,
        output_per_million -> BigInt,
        prompt_tokens -> BigInt,
        cached_prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cost -> BigInt,
        hold_id -> Text,
        post_id -> Nullable<Text>,
        upstream_status -> Integer,
        created_at -> Timestamp,
        overrun_micros -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        subject_type -> Text,
        subject_id -> Text,
        reason -> Nullable<Text>,
        details -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(vouchers -> applications (application_id));
diesel::joinable!(api_keys -> vouchers (voucher_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    accounts,
    transfers,
    applications,
    vouchers,
    api_keys,
    prices,
    usage_records,
    audit_log,
    key_spend,
    capped_holds,
);

diesel::table! {
    idempotent_requests (api_key_id, idempotency_key) {
        api_key_id -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        status -> Text,
        response_status -> Nullable<Integer>,
        response_content_type -> Nullable<Text>,
        response_body -> Nullable<Text>,
        created_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    job_runs (id) {
        id -> Text,
        run_key -> Text,
        job -> Text,
        scheduled_at -> Timestamp,
        trigger_kind -> Text,
        worker_id -> Text,
        attempts -> Integer,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        outcome -> Text,
        summary -> Text,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        dedupe_key -> Text,
        recipient -> Text,
        template -> Text,
        data -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reconciliations (id) {
        id -> Text,
        checked_at -> Timestamp,
        accounts_checked -> BigInt,
        transfers_checked -> BigInt,
        balanced -> Bool,
        differences -> Text,
    }
}

diesel::table! {
    challenges (id) {
        id -> Text,
        title -> Text,
        theme -> Text,
        eligible_kinds -> Text,
        opens_at -> Timestamp,
        closes_at -> Timestamp,
        assessors_assigned_at -> Timestamp,
        assessment_deadline -> Timestamp,
        decisions_released_at -> Timestamp,
        criteria -> Text,
        assessors_per_entry -> Integer,
        award_pool -> BigInt,
        award_amounts -> Text,
        pilot_places -> Integer,
        recurrence -> Nullable<Text>,
        previous_id -> Nullable<Text>,
        fund_account_id -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        cancelled_at -> Nullable<Timestamp>,
        cancellation_reason -> Nullable<Text>,
    }
}

diesel::table! {
    challenge_entries (id) {
        id -> Text,
        challenge_id -> Text,
        entrant_id -> Text,
        company_number -> Text,
        organisation_name -> Text,
        organisation_kind -> Text,
        region -> Text,
        sic_code -> Text,
        title -> Text,
        summary -> Text,
        submitted_at -> Timestamp,
        updated_at -> Timestamp,
        locked_at -> Nullable<Timestamp>,
        score_bp -> Nullable<BigInt>,
        entry_rank -> Nullable<Integer>,
        award -> BigInt,
        pilot_invited -> Bool,
        decided_at -> Nullable<Timestamp>,
        award_refused_reason -> Nullable<Text>,
        assessments_incomplete -> Bool,
        kind_evidence -> Nullable<Text>,
        kind_check -> Nullable<Text>,
        kind_check_reason -> Nullable<Text>,
        kind_checked_by -> Nullable<Text>,
        kind_checked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    assessor_conflicts (id) {
        id -> Text,
        assessor_id -> Text,
        company_number -> Text,
        reason -> Text,
        declared_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    challenge_allocations (entry_id, assessor_id) {
        entry_id -> Text,
        assessor_id -> Text,
        allocated_at -> Timestamp,
    }
}

diesel::table! {
    challenge_scores (entry_id, assessor_id) {
        entry_id -> Text,
        assessor_id -> Text,
        scores -> Text,
        percent_bp -> BigInt,
        comment -> Text,
        submitted_at -> Timestamp,
    }
}

diesel::table! {
    challenge_milestones (challenge_id, milestone) {
        challenge_id -> Text,
        milestone -> Text,
        performed_at -> Timestamp,
        summary -> Text,
    }
}

diesel::joinable!(challenge_entries -> challenges (challenge_id));
diesel::joinable!(challenge_allocations -> challenge_entries (entry_id));
diesel::allow_tables_to_appear_in_same_query!(
    challenges,
    challenge_entries,
    challenge_allocations,
    challenge_scores,
    assessor_conflicts,
    challenge_milestones,
);

diesel::table! {
    budget_lines (id) {
        id -> Text,
        name -> Text,
        financial_year -> Text,
        targeting -> Text,
        account_id -> Text,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consulting_slots (id) {
        id -> Text,
        adviser_id -> Text,
        starts_at -> Timestamp,
        ends_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    consulting_bookings (id) {
        id -> Text,
        slot_id -> Text,
        voucher_id -> Text,
        booked_by -> Text,
        minutes -> BigInt,
        hold_id -> Text,
        booked_at -> Timestamp,
        cancelled_at -> Nullable<Timestamp>,
        outcome -> Nullable<Text>,
        notes -> Nullable<Text>,
        next_steps -> Nullable<Text>,
        recorded_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(consulting_bookings -> consulting_slots (slot_id));
diesel::allow_tables_to_appear_in_same_query!(consulting_slots, consulting_bookings);

diesel::table! {
    incentive_rules (id) {
        id -> Text,
        rule_key -> Text,
        version -> Integer,
        name -> Text,
        condition_json -> Text,
        effect_json -> Text,
        budget_line_id -> Nullable<Text>,
        active -> Bool,
        created_by -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    voucher_incentives (id) {
        id -> Text,
        voucher_id -> Text,
        rule_id -> Text,
        why -> Text,
        amount -> BigInt,
        milestone -> Bool,
        granted_at -> Nullable<Timestamp>,
        refused_reason -> Nullable<Text>,
    }
}

diesel::joinable!(voucher_incentives -> incentive_rules (rule_id));
diesel::allow_tables_to_appear_in_same_query!(incentive_rules, voucher_incentives);
diesel::allow_tables_to_appear_in_same_query!(vouchers, voucher_incentives);
diesel::allow_tables_to_appear_in_same_query!(vouchers, incentive_rules);

diesel::table! {
    usage_daily (day, voucher_id, model) {
        day -> Date,
        voucher_id -> Text,
        model -> Text,
        requests -> BigInt,
        prompt_tokens -> BigInt,
        cached_prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cost -> BigInt,
    }
}

diesel::table! {
    reports (id) {
        id -> Text,
        kind -> Text,
        period_from -> Date,
        period_to -> Date,
        generated_at -> Timestamp,
        generated_by -> Text,
        schema_version -> Integer,
        content_hash -> Text,
        content -> Text,
        public_content -> Text,
        html -> Text,
        public_html -> Text,
        draft -> Bool,
    }
}

diesel::table! {
    payments (id) {
        id -> Text,
        kind -> Text,
        owner_id -> Text,
        voucher_id -> Nullable<Text>,
        account_id -> Text,
        amount_micros -> BigInt,
        amount_pence -> BigInt,
        currency -> Text,
        status -> Text,
        stripe_session_id -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        payment_intent_id -> Nullable<Text>,
        refunded_micros -> BigInt,
        reversed_micros -> BigInt,
        shortfall_micros -> BigInt,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        paid_at -> Nullable<Timestamp>,
        paid_via -> Nullable<Text>,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        payment_id -> Nullable<Text>,
        outcome -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    proxy_instances (id) {
        id -> Text,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
    }
}

diesel::table! {
    instance_holds (hold_id) {
        hold_id -> Text,
        instance_id -> Text,
        extended_to -> Nullable<Timestamp>,
    }
}
diesel::allow_tables_to_appear_in_same_query!(proxy_instances, instance_holds, transfers);

diesel::table! {
    second_approvals (application_id) {
        application_id -> Text,
        requested_by -> Text,
        reason -> Text,
        amount_micros -> BigInt,
        total_micros -> BigInt,
        valid_days -> Integer,
        requested_at -> Timestamp,
        decided_by -> Nullable<Text>,
        outcome -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
    }
}
diesel::joinable!(second_approvals -> applications (application_id));
diesel::allow_tables_to_appear_in_same_query!(second_approvals, applications);

diesel::table! {
    /// What each open lease has recorded so far (migration 000023).
    hold_usage (hold_id) {
        hold_id -> Text,
        cost -> BigInt,
        requests -> BigInt,
    }
}
diesel::allow_tables_to_appear_in_same_query!(hold_usage, transfers);

diesel::table! {
    /// SQLite only: a view that takes a usage batch as one multi-row INSERT, each row written
    /// by its trigger with its lease's total, rollup and key (migration 000025). Nothing is
    /// ever read from it.
    usage_batch_rows (id) {
        id -> Text,
        request_id -> Text,
        voucher_id -> Text,
        api_key_id -> Text,
        model -> Text,
        price_id -> Text,
        input_per_million -> BigInt,
        cached_input_per_million -> BigInt,
        output_per_million -> BigInt,
        prompt_tokens -> BigInt,
        cached_prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cost -> BigInt,
        hold_id -> Text,
        post_id -> Nullable<Text>,
        upstream_status -> Integer,
        created_at -> Timestamp,
        overrun_micros -> BigInt,
        /// Paid from purchased credit: kept out of the programme's rollups.
        own_money -> Bool,
        /// The key's latest row in the batch, and its last use is due.
        touch -> Bool,
    }
}
