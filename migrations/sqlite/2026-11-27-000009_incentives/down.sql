DROP TABLE voucher_incentives;
DROP TABLE incentive_rules;
ALTER TABLE applications DROP COLUMN university_spin_off;
