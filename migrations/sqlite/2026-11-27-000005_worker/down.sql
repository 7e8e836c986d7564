DROP TABLE reconciliations;
DROP TABLE outbox;
DROP TABLE job_runs;
