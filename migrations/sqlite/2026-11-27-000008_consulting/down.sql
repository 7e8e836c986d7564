DROP TABLE consulting_bookings;
DROP TABLE consulting_slots;
DELETE FROM accounts WHERE id IN ('consulting-source', 'consulting-used');
