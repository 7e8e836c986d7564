DROP TABLE second_approvals;
