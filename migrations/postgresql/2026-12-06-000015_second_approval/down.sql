DROP TABLE second_approvals;
ALTER TABLE applications DROP CONSTRAINT applications_status_check;
ALTER TABLE applications ADD CONSTRAINT applications_status_check
    CHECK (status IN ('submitted', 'ineligible', 'approved', 'rejected'));
