DROP TABLE voucher_incentives;
DROP TABLE incentive_rules;
