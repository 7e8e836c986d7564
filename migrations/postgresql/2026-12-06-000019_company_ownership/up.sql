-- Anyone can type a company number, so an application holds its company's number against
-- other applications (UNIQUE live_company_number) only once ownership of the company is
-- confirmed. How it was settled is recorded with the application: the state, the method
-- (an administrator's check), who, when and their note.
ALTER TABLE applications ADD COLUMN ownership TEXT NOT NULL DEFAULT 'unconfirmed'
    CHECK (ownership IN ('unconfirmed', 'confirmed', 'refused'));
ALTER TABLE applications ADD COLUMN ownership_method TEXT;
ALTER TABLE applications ADD COLUMN ownership_by TEXT;
ALTER TABLE applications ADD COLUMN ownership_at TIMESTAMP;
ALTER TABLE applications ADD COLUMN ownership_note TEXT;

-- An approval was an administrator's check: the approver confirmed ownership then. (Award
-- records of challenge winners were decided by no one and hold no number: left unconfirmed.)
UPDATE applications
SET ownership = 'confirmed',
    ownership_method = 'admin_check',
    ownership_by = decided_by,
    ownership_at = decided_at,
    ownership_note = 'confirmed by the approval, before ownership was recorded'
WHERE status = 'approved' AND decided_by IS NOT NULL AND decided_at IS NOT NULL;

UPDATE applications
SET ownership = 'confirmed',
    ownership_method = 'admin_check',
    ownership_by = (SELECT s.requested_by FROM second_approvals s
                    WHERE s.application_id = applications.id),
    ownership_at = (SELECT s.requested_at FROM second_approvals s
                    WHERE s.application_id = applications.id),
    ownership_note = 'confirmed by the first approval, before ownership was recorded'
WHERE status = 'awaiting_second_approval'
  AND EXISTS (SELECT 1 FROM second_approvals s WHERE s.application_id = applications.id);

-- Applications nobody has checked stop blocking their company's number.
UPDATE applications SET live_company_number = NULL WHERE ownership <> 'confirmed';
