-- Every award of assistance is checked against the Minimal Financial Assistance limit when it
-- is paid; one that would pass it is recorded as refused, with the reason.
ALTER TABLE challenge_entries ADD COLUMN award_refused_reason TEXT;
ALTER TABLE voucher_incentives ADD COLUMN refused_reason TEXT;
-- An entry whose allocated assessors did not all score it is recorded as incomplete at the
-- panel, and not ranked.
ALTER TABLE challenge_entries ADD COLUMN assessments_incomplete BOOLEAN NOT NULL DEFAULT FALSE;
-- An entry as a startup or university spin-off carries evidence (JSON: incorporated_on,
-- university) that an administrator accepts or rejects, with a reason, before it is ranked.
ALTER TABLE challenge_entries ADD COLUMN kind_evidence TEXT;
ALTER TABLE challenge_entries ADD COLUMN kind_check TEXT;
ALTER TABLE challenge_entries ADD COLUMN kind_check_reason TEXT;
ALTER TABLE challenge_entries ADD COLUMN kind_checked_by TEXT;
ALTER TABLE challenge_entries ADD COLUMN kind_checked_at TIMESTAMP;
-- A cancelled challenge: its pool went back to the fund and no milestone runs.
ALTER TABLE challenges ADD COLUMN cancelled_at TIMESTAMP;
ALTER TABLE challenges ADD COLUMN cancellation_reason TEXT;
