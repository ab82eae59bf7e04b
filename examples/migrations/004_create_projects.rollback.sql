DROP VIEW account_summary;
DROP TABLE projects;
