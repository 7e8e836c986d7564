DROP INDEX transfers_code_created;
DROP TABLE reports;
