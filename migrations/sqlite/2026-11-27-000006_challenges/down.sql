DROP TABLE challenge_milestones;
DROP TABLE challenge_scores;
DROP TABLE challenge_allocations;
DROP TABLE assessor_conflicts;
DROP TABLE challenge_entries;
DROP TABLE challenges;
