DROP TABLE stripe_events;
DROP TABLE payments;
ALTER TABLE vouchers DROP COLUMN contribution_paid_at;
ALTER TABLE vouchers DROP COLUMN contribution_micros;
DELETE FROM accounts WHERE id IN ('stripe-clearing', 'purchased-usage');
